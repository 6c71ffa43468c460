"""The embedded demo data (headlines, a FAQ, clean sentences, a film catalogue), all written by the team.

Each task's demo (`stepwise demo --app NAME`) is its own: `Task.demo` names it.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DEMO_DATA = "headlines.tsv"


def demo_data_path() -> Path:
    return Path(str(resources.files("stepwise.demo") / DEMO_DATA))
