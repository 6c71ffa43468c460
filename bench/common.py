"""Shared bench helpers: paths to ../shared/data, table printing, HF Trainer baseline settings."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("STEPWISE_SHARED", ROOT.parent / "shared")) / "data"
OUT = ROOT / "bench" / "out"

# The reference settings from the brief: batch 32, lr 5e-5, weight decay 0.01, 10% warmup, seed 0.
HF_SETTINGS = {"batch_size": 32, "lr": 5e-5, "weight_decay": 0.01, "warmup_ratio": 0.1, "seed": 0}


def cpu_flags() -> str:
    """The CPU features a timing depends on (bf16, VNNI, AVX-512), named in every benchmark's output."""
    path = Path("/proc/cpuinfo")
    flags = set(path.read_text().split()) if path.exists() else set()
    wanted = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")
    return " ".join(f for f in wanted if f in flags)


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


def emit(name: str, rows: list[dict], columns: list[str], extra: dict | None = None) -> None:
    print(table(rows, columns))
    record = {"bench": name, "rows": rows, **(extra or {})}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(record, indent=2))
    print(json.dumps(record))


def hf_training_args(name: str, epochs: float, seed: int = HF_SETTINGS["seed"]):
    """HF Trainer arguments for the reference settings (no evaluation or saving during training)."""
    from transformers import TrainingArguments

    return TrainingArguments(output_dir=str(OUT / name), per_device_train_batch_size=HF_SETTINGS["batch_size"],
                             per_device_eval_batch_size=64, learning_rate=HF_SETTINGS["lr"],
                             weight_decay=HF_SETTINGS["weight_decay"], warmup_steps=HF_SETTINGS["warmup_ratio"],
                             num_train_epochs=epochs, seed=seed, eval_strategy="no",
                             save_strategy="no", report_to=[], logging_steps=100, use_cpu=True, disable_tqdm=True)


@contextmanager
def levers_off():
    """Training as before issue 17, for a before/after row in one process: torch's own dropout (the swap to
    MaskDropout disabled; the row also passes `embedding_update="dense"`)."""
    import stepwise.training.loop as loop

    swap = loop.use_mask_dropout
    loop.use_mask_dropout = lambda model: 0
    try:
        yield
    finally:
        loop.use_mask_dropout = swap


def lever_rows(parts: list[str], run) -> list[dict]:
    """Issue 17's extra same-settings rows: `dense` (every embedding row through AdamW, as before the used-rows
    update), `frozen` (--freeze-embeddings) and `before` (training as before the issue). `run(name, **options)`
    trains one row at the bench's same settings plus `options`."""
    rows = []
    if "dense" in parts:
        rows.append(run("same settings, dense embedding update", embedding_update="dense"))
    if "frozen" in parts:
        rows.append(run("same settings, frozen word embeddings", freeze_embeddings=True))
    if "before" in parts:
        with levers_off():
            rows.append(run("same settings, before issue 17", embedding_update="dense"))
    return rows


def timed_train(task: str, name: str, train_path, dev_path, test_path, **options):
    """A fresh `stepwise.train` run under bench/out/NAME; returns the run and its whole wall time."""
    import stepwise

    out = OUT / name.replace(" ", "_")
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    run = stepwise.train(task=task, train=str(train_path), dev=str(dev_path), test=str(test_path), out=str(out),
                         quiet=True, **options)
    return run, round(time.perf_counter() - start, 1)
