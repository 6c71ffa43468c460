"""stepwise's rows of bench/recommend.py: the text two-tower, the hybrid, and the hybrid + the co-occurrence step.

Each row trains `stepwise train --task recommend` (the recipe, on the bench's own split, so every row ranks the
same test users), then scores the test users through the run's `Recommender` — the path `stepwise recommend`
and `POST /v1/recommend` take — and times one `recommend` call (k 10 over the whole catalogue, seen items
excluded) for 200 test users: the p50. Train seconds are the recipe's wall time (tokenising, the loop with
its dev evaluations, embedding the catalogue, choosing the fusion on dev, writing the run), the bundled
MiniLM at the recipe's defaults. The hybrid run serves both hybrid rows (one training per seed).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from common import OUT, SHARED
from recommend_anchors import Bench, Result, seeded

from stepwise.config import TrainConfig

LATENCY_USERS = 200
_runs: dict[tuple[bool, int], tuple[Path, float]] = {}


def _train(bench: Bench, seed: int, item_ids: bool) -> tuple[Path, float]:
    """The run (trained once per seed and tower kind) and its wall seconds."""
    from stepwise.recipes.recommend import train_recommender

    if (item_ids, seed) not in _runs:
        out = OUT / "recommend" / f"{'hybrid' if item_ids else 'text'}-seed{seed}"
        root = SHARED / "ml100k"
        cfg = TrainConfig(task="recommend", interactions=str(root / "ratings.tsv"), items=str(root / "items.tsv"),
                          out=str(out), seed=seed, item_ids=item_ids, overwrite=True, quiet=True)
        tick = time.perf_counter()
        train_recommender(cfg, split=bench.split)
        _runs[(item_ids, seed)] = (out, time.perf_counter() - tick)
    return _runs[(item_ids, seed)]


def _scores(bench: Bench, run: Path, fused: bool) -> tuple[np.ndarray, float]:
    """The test users' scores over the catalogue (bench order) and the p50 of one recommend call in ms."""
    from stepwise.recommend.recommender import Recommender

    recommender = Recommender.open(run)
    if not fused:
        recommender.settings["fusion"] = {**recommender.settings["fusion"], "weight": 0.0}
    if recommender.items != bench.split.items:
        raise RuntimeError("the run's catalogue order differs from the bench's")
    scores = np.concatenate([recommender.scores(bench.histories[i:i + 256])
                             for i in range(0, len(bench.histories), 256)])
    timings = []
    for history in bench.histories[:LATENCY_USERS]:
        ids = [bench.split.items[j] for j in history] or [bench.split.items[0]]
        tick = time.perf_counter()
        recommender.recommend(history=ids, k=10, exclude_seen=True)
        timings.append(time.perf_counter() - tick)
    return scores, 1000 * float(np.median(timings))


@seeded
def stepwise_text(bench: Bench, seed: int) -> Result:
    """The text two-tower: no id vectors, no second step."""
    run, seconds = _train(bench, seed, item_ids=False)
    scores, p50 = _scores(bench, run, fused=False)
    return Result("stepwise text two-tower", scores, seconds, p50)


@seeded
def stepwise_hybrid(bench: Bench, seed: int) -> Result:
    """The hybrid two-tower (text + id vectors for trained items), no second step."""
    run, seconds = _train(bench, seed, item_ids=True)
    scores, p50 = _scores(bench, run, fused=False)
    return Result("stepwise hybrid", scores, seconds, p50)


@seeded
def stepwise_hybrid_cf(bench: Bench, seed: int) -> Result:
    """The hybrid fused with the co-occurrence score, weight and decay chosen on dev (the run's default)."""
    run, seconds = _train(bench, seed, item_ids=True)
    scores, p50 = _scores(bench, run, fused=True)
    return Result("stepwise hybrid + co-occurrence", scores, seconds, p50)


ROWS = [stepwise_text, stepwise_hybrid, stepwise_hybrid_cf]
