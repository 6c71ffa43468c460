"""Shared bench helpers: paths to ../shared/data, table printing, HF Trainer baseline settings."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("STEPWISE_SHARED", ROOT.parent / "shared")) / "data"
OUT = ROOT / "bench" / "out"

# The reference settings from the brief: batch 32, lr 5e-5, weight decay 0.01, 10% warmup, seed 0.
HF_SETTINGS = {"batch_size": 32, "lr": 5e-5, "weight_decay": 0.01, "warmup_ratio": 0.1, "seed": 0}


def need(path: Path) -> Path:
    if not path.exists():
        sys.exit(f"bench: {path} not found — benchmarks read ../shared/data beside the checkout "
                 "(or set STEPWISE_SHARED)")
    return path


def table(rows: list[dict], columns: list[str]) -> str:
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(columns)]
    line = "| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(x.ljust(w) for x, w in zip(r, widths)) + " |" for r in cells]
    return "\n".join([line, sep, *body])


def emit(name: str, rows: list[dict], columns: list[str], extra: dict) -> None:
    print(table(rows, columns))
    record = {"bench": name, "rows": rows, **extra}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(record, indent=2))
    print(json.dumps(record))
