"""stepwise's rows of bench/recommend.py: the text two-tower, the hybrid, and the hybrid + the co-occurrence step.

Each row trains `stepwise train --task recommend` (the recipe, on the bench's own split, so every row ranks
the same test users) and takes the recipe's test score matrix of its step. The p50 is one `recommend` call
through the run's `Recommender` (the path of `stepwise recommend` and `POST /v1/recommend`: k 10 over the
whole catalogue, seen items excluded, the fusion included) for 200 test users. Train seconds are the
recipe's wall time (tokenising, the loop with its dev evaluation, embedding the catalogue, choosing the
fusion on dev, scoring test, writing the run), the bundled MiniLM at the recipe's defaults. The hybrid run
serves both hybrid rows (one training per seed).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from common import OUT, SHARED
from recommend_anchors import Bench, Result, seeded

from stepwise.config import TrainConfig

LATENCY_USERS = 200
_runs: dict[tuple[bool, int], tuple[Path, float, dict[str, np.ndarray]]] = {}


def _train(bench: Bench, seed: int, item_ids: bool) -> tuple[Path, float, dict[str, np.ndarray]]:
    """The run (trained once per seed and tower kind), its wall seconds and its test score matrices."""
    from stepwise.tasks.recommend.train import train_recommender

    if (item_ids, seed) not in _runs:
        out = OUT / "recommend" / f"{'hybrid' if item_ids else 'text'}-seed{seed}"
        root = SHARED / "ml100k"
        cfg = TrainConfig(task="recommend", interactions=str(root / "ratings.tsv"), items=str(root / "items.tsv"),
                          out=str(out), seed=seed, item_ids=item_ids, overwrite=True, quiet=True)
        matrices: dict[str, np.ndarray] = {}
        tick = time.perf_counter()
        train_recommender(cfg, split=bench.split, matrices=matrices)
        _runs[(item_ids, seed)] = (out, time.perf_counter() - tick, matrices)
    return _runs[(item_ids, seed)]


def _p50(bench: Bench, run: Path) -> float:
    """The p50 of one `recommend` call (k 10, seen excluded, the run's fusion) in ms, over 200 test users."""
    from stepwise.tasks.recommend.recommender import Recommender

    recommender = Recommender.open(run)
    if recommender.items != bench.split.items:
        raise RuntimeError("the run's catalogue order differs from the bench's")
    timings = []
    for history in bench.histories[:LATENCY_USERS]:
        ids = [bench.split.items[j] for j in history] or [bench.split.items[0]]
        tick = time.perf_counter()
        recommender.recommend(history=ids, k=10, exclude_seen=True)
        timings.append(time.perf_counter() - tick)
    return 1000 * float(np.median(timings))


def _row(bench: Bench, seed: int, item_ids: bool, step: str, name: str) -> Result:
    run, seconds, matrices = _train(bench, seed, item_ids)
    return Result(name, matrices[step], seconds, _p50(bench, run) if step == "fused" or not item_ids else None)


@seeded
def stepwise_text(bench: Bench, seed: int) -> Result:
    """The text two-tower: no id vectors, no second step."""
    return _row(bench, seed, False, "two_tower", "stepwise text two-tower")


@seeded
def stepwise_hybrid(bench: Bench, seed: int) -> Result:
    """The hybrid two-tower (text + id vectors for trained items), no second step."""
    return _row(bench, seed, True, "two_tower", "stepwise hybrid")


@seeded
def stepwise_hybrid_cf(bench: Bench, seed: int) -> Result:
    """The hybrid fused with the co-occurrence score, weight and decay chosen on dev (the run's default)."""
    return _row(bench, seed, True, "fused", "stepwise hybrid + co-occurrence")


ROWS = [stepwise_text, stepwise_hybrid, stepwise_hybrid_cf]
