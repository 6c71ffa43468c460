"""Recipe: `stepwise index RUN --passages FILE --out DIR [--add FILE]` — embed a collection and store it.

A new index is written whole into DIR (atomically); `--add` embeds only the new passages and rewrites
the index with them appended, refusing ids it already holds and a model other than the one that built it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from stepwise.errors import StepwiseError


def build_index(run: str | Path, *, passages: str | Path | None = None, out: str | Path,
                add: str | Path | None = None, backend: str = "auto", threads: int | None = None,
                batch_size: int = 64) -> dict[str, Any]:
    """Build (or extend with `add`) the index at `out`; returns a summary for the CLI."""
    from stepwise.places import INDEX, check_output
    from stepwise.tasks.retrieve.data import read_pool
    from stepwise.tasks.retrieve.encoder import load_encoder
    from stepwise.tasks.retrieve.index import Index, is_index

    if (passages is None) == (add is None):
        raise StepwiseError("give --passages FILE (a new index) or --add FILE (append to the index in --out)",
                            fix="e.g. stepwise index RUN --passages answers.jsonl --out index/")
    out = Path(out)
    check_output(out, "--out", INDEX, inputs=[p for p in (run, passages, add) if p is not None])
    existing = None
    if add is not None:
        existing = Index.load(out)
    elif out.exists() and (not out.is_dir() or (any(out.iterdir()) and not is_index(out))):
        raise StepwiseError("--out exists and is not an index", path=out,
                            fix="choose a new or empty directory (an earlier index there is replaced)")
    items = read_pool(add if add is not None else passages)
    embedder, meta = load_encoder(run, backend=backend, threads=threads, batch_size=batch_size)
    if existing is not None:
        existing.check_model(meta["fingerprint"], str(run))
    tick = time.perf_counter()
    vectors = embedder.embed([p.text for p in items])
    seconds = time.perf_counter() - tick
    if existing is None:
        index = Index.build(out, items, vectors, meta, meta["source"], str(Path(run).resolve()))
    else:
        index = existing
        index.meta["keep_calibration"] = False  # new passages: the old threshold no longer describes the index
        index.add(items, vectors, str(add))
    index.save()
    return {"out": str(out), "passages": len(index.passages), "added": len(items), "search": index.meta["search"],
            "embed_seconds": round(seconds, 2), "passages_per_s": round(len(items) / max(seconds, 1e-9), 1),
            "model": meta["source"]}
