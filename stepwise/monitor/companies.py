"""Which companies a text is about: its cashtags (`$AAPL`, `$BRK.B`) and, with a tagger, its organisation
entities. Every event also counts for the whole stream, the pseudo-company `ALL`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

ALL = "*"  # the whole stream, every event
CASHTAG = re.compile(r"(?<![\w$])\$([A-Za-z]{1,6}(?:\.[A-Za-z]{1,2})?)(?![\w.]*\w)")
ORG_TYPES = ("ORG",)
TRIM = " \t\"'“”‘’.,;:!?()[]{}<>-–—#@"


def cashtags(text: str) -> list[str]:
    """Upper-cased tickers in order of first mention: `$aapl up, $AAPL` → ['AAPL']; `$100` is no ticker."""
    return list(dict.fromkeys(m.group(1).upper() for m in CASHTAG.finditer(text)))


def organisations(record: dict[str, Any], types: Sequence[str] = ORG_TYPES) -> list[str]:
    """Organisation names from a tagger's prediction record (`entities` with `type` and `text`)."""
    names = (str(e.get("text", "")).strip(TRIM) for e in record.get("entities", []) if e.get("type") in types)
    return list(dict.fromkeys(n for n in names if len(n) > 1))


def companies_of(text: str, tagged: dict[str, Any] | None = None) -> list[str]:
    """The companies an event is about (cashtags first, then organisations), without `ALL`."""
    found = cashtags(text)
    if tagged is not None:
        known = {c.lower() for c in found}
        found += [o for o in organisations(tagged) if o.lower() not in known]
    return found
