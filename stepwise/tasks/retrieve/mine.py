"""Recipe: `stepwise mine RUN --pairs F --out F` — training pairs for a reranker, from the retriever's misses.

For each (query, passage) pair: the pair itself, labeled relevant, and the retriever's top-ranked other
passages, labeled other: exactly the near misses a second step must learn to put below the answer. The
output is a text-pair classification file (`text`, `text_pair`, `label`), trained with
`stepwise train --task classify --pair-column text_pair`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stepwise.errors import StepwiseError


def mine(run: str | Path, *, pairs: str | Path, out: str | Path, pool: str | Path | None = None,
         negatives: int = 3, skip: int = 0, threads: int | None = None) -> dict[str, Any]:
    from stepwise.files import atomic_write_text
    from stepwise.places import FILE, check_output
    from stepwise.tasks.retrieve.data import check_in_pool, pool_of, read_pairs, read_pool, resolve
    from stepwise.tasks.retrieve.encoder import load_encoder
    from stepwise.tasks.retrieve.objective import mine_negatives

    if not 1 <= negatives <= 64:
        raise StepwiseError(f"--negatives must be from 1 to 64, got {negatives}", fix="e.g. --negatives 3")
    if skip < 0:
        raise StepwiseError(f"--skip must be 0 or more, got {skip}", fix="e.g. --skip 0")
    check_output(out, "--out", FILE, inputs=[p for p in (run, pairs, pool) if p is not None])
    items = read_pairs(pairs)
    passages = read_pool(pool) if pool else pool_of([items])
    if pool:
        check_in_pool(items, passages, pairs, pool)
    if len(passages) < 2:
        raise StepwiseError("the pool holds one passage: no negatives to mine", path=pool or pairs,
                            fix="give a pool (--pool) with more passages")
    embedder, _ = load_encoder(run, threads=threads)
    gold = resolve(items, passages)
    found = mine_negatives(embedder.embed([p.query for p in items]), embedder.embed([p.text for p in passages]),
                           gold, min(negatives, len(passages) - 1), skip=skip)
    lines = []
    for pair, negs in zip(items, found):
        lines.append({"text": pair.query, "text_pair": pair.passage.text, "label": "relevant"})
        lines += [{"text": pair.query, "text_pair": passages[n].text, "label": "other"} for n in negs]
    atomic_write_text(out, "".join(json.dumps(line) + "\n" for line in lines))
    return {"out": str(out), "pairs": len(items), "lines": len(lines), "negatives_per_query": negatives}
