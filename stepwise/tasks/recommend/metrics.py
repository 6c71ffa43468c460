"""Full-ranking scores for next-item recommendation: HR@k, NDCG@k, MRR and catalogue coverage@k.

Every item of the catalogue is ranked, never a sample of negatives: sampled metrics can reverse the order
of models (Krichene & Rendle, KDD 2020). An item tied with the target counts as ranked above it (the
pessimistic rank), so a model that scores everything alike gets no credit for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def exclusion_mask(shape: tuple[int, int], exclude: Sequence[Iterable[int]]) -> np.ndarray:
    """A [users, items] boolean array, True where an item may not be recommended to that user."""
    if len(exclude) != shape[0]:
        raise ValueError(f"exclude has {len(exclude)} rows for {shape[0]} users")
    lists = [np.fromiter(row, dtype=np.int64) for row in exclude]
    rows = np.repeat(np.arange(shape[0]), [len(c) for c in lists])
    cols = np.concatenate(lists) if lists else np.zeros(0, dtype=np.int64)
    if cols.size and (cols.min() < 0 or cols.max() >= shape[1]):
        raise ValueError("an excluded item index is outside the catalogue")
    mask = np.zeros(shape, dtype=bool)
    mask[rows, cols] = True
    return mask


def target_ranks(scores: np.ndarray, targets: Sequence[int], mask: np.ndarray) -> np.ndarray:
    """0-based rank of each user's target among the items not masked, ties counted against it."""
    users = np.arange(scores.shape[0])
    target_scores = scores[users, targets]
    return ((scores >= target_scores[:, None]) & ~mask).sum(axis=1) - 1


def top_k(scores: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    """Each user's k best items (unordered) with the masked ones last; -1 where fewer than k may be shown."""
    k = min(k, scores.shape[1])
    key = np.where(mask, np.nan, -scores.astype(np.float64))  # NaN sorts after every number
    top = np.argpartition(key, k - 1, axis=1)[:, :k] if k < scores.shape[1] else np.argsort(key, axis=1)
    return np.where(np.take_along_axis(mask, top, axis=1), -1, top)


def rank_metrics(scores: np.ndarray, targets: Sequence[int], exclude: Sequence[Iterable[int]],
                 k: int = 10) -> dict[str, float]:
    """HR@k, NDCG@k, MRR (untruncated) and coverage@k of scores [users, items] with one target per user.

    `exclude[u]` are the items user u may not be recommended (what they already had); excluding a user's
    target is a mistake in the caller and raises. Coverage@k is the share of the catalogue that appears in
    at least one user's top k.
    """
    scores = np.asarray(scores)
    targets = np.asarray(targets, dtype=np.int64)
    if scores.ndim != 2 or scores.shape[0] == 0 or scores.shape[1] == 0:
        raise ValueError(f"scores must be a non-empty [users, items] array, got shape {scores.shape}")
    if targets.shape != (scores.shape[0],):
        raise ValueError(f"{targets.size} targets for {scores.shape[0]} users")
    if targets.min() < 0 or targets.max() >= scores.shape[1]:
        raise ValueError("a target index is outside the catalogue")
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    if np.isnan(scores).any():
        raise ValueError("scores hold NaN: a NaN cannot be ranked")
    mask = exclusion_mask(scores.shape, exclude)
    users = np.arange(scores.shape[0])
    if mask[users, targets].any():
        user = int(np.flatnonzero(mask[users, targets])[0])
        raise ValueError(f"user row {user}: the target {int(targets[user])} is among the excluded items")
    rank = target_ranks(scores, targets, mask)
    hit = rank < k
    top = top_k(scores, mask, k)
    shown = np.unique(top[top >= 0])
    return {f"hr@{k}": float(hit.mean()),
            f"ndcg@{k}": float(np.where(hit, 1.0 / np.log2(rank + 2.0), 0.0).mean()),
            "mrr": float((1.0 / (rank + 1.0)).mean()),
            f"coverage@{k}": float(shown.size / scores.shape[1])}
