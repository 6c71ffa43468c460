"""The collaborative second step: item-item co-occurrence from the training interactions, fused by rank.

Two items are similar when the same users interacted with both (cosine over the user-item matrix, as
ItemKNN); a user's score for an item is the recency-weighted sum of its similarity to their recent items
(the newest weighs 1, the one before `decay`, ...). Each item keeps its `NEIGHBOURS` most similar items
only, so the table stays sparse as the catalogue grows and one user's scores are one sparse product.

The fusion adds the two scores after standardising each per user (mean 0, standard deviation 1 over the
catalogue), `weight` times the collaborative one; weight and decay are chosen on dev. A cold item has
no co-occurrences: its similarity column is borrowed from its nearest items by text (`impute_cold`), so a
user's collaborative score for a new film is their score for the films it reads like (a 0 standardised
like the others would sink every cold item, and the average would place it by everyone else's evidence).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

NEIGHBOURS = 200
#: a cold item's collaborative column is the mean of its nearest known items' by text (impute_cold)
TEXT_NEIGHBOURS = 10
#: tried on dev, the best kept (weight 0: the two-tower alone)
WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
DECAYS = (1.0, 0.8, 0.5)


def item_similarity(histories: Sequence[Sequence[int]], n_items: int, neighbours: int = NEIGHBOURS) -> sp.csr_matrix:
    """Cosine similarity of items over users, each row cut to its `neighbours` largest, no self-similarity."""
    rows = [u for u, items in enumerate(histories) for _ in set(items)]
    cols = [i for items in histories for i in set(items)]
    users = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(histories), n_items))
    co = (users.T @ users).toarray()
    norms = np.sqrt(np.maximum(np.diag(co), 1e-12))
    sim = co / norms[:, None] / norms[None, :]
    np.fill_diagonal(sim, 0.0)
    if neighbours < n_items:
        cut = np.argpartition(-sim, neighbours - 1, axis=1)[:, neighbours:]
        np.put_along_axis(sim, cut, 0.0, axis=1)
    return sp.csr_matrix(sim.astype(np.float32))


def impute_cold(sim: sp.csr_matrix, vectors: np.ndarray, neighbours: int = TEXT_NEIGHBOURS) -> sp.csr_matrix:
    """Give each item without co-occurrences the similarity column of its nearest items by text.

    A cold item has no co-occurrences, so its collaborative score would be 0 (or, standardised, the same for
    every user) and the fusion would rank it by the other items' evidence rather than its own. Its column
    becomes the cosine-weighted mean of the columns of its `neighbours` nearest known items by item vector:
    a user's score for it is their score for the items it reads like.
    """
    known = known_items(sim)
    cold = np.flatnonzero(~known)
    if not cold.size or not known.any():
        return sim
    pool = np.flatnonzero(known)
    closeness = vectors[cold] @ vectors[pool].T  # [cold, known]
    k = min(neighbours, pool.size)
    top = np.argpartition(-closeness, k - 1, axis=1)[:, :k]
    weights = np.maximum(np.take_along_axis(closeness, top, axis=1), 0.0)
    weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
    mix = sp.csr_matrix((weights.ravel(), (np.repeat(np.arange(cold.size), k), pool[top].ravel())),
                        shape=(cold.size, sim.shape[0]))
    columns = (sim @ mix.T).tocsc()  # [items, cold]
    out = sim.tolil()
    out[:, cold] = columns
    return sp.csr_matrix(out, dtype=np.float32)


def history_weights(histories: Sequence[Sequence[int]], n_items: int, decay: float) -> sp.csr_matrix:
    """[users, items]: each history item weighted by decay ** (how many items came after it)."""
    data, rows, cols = [], [], []
    for u, items in enumerate(histories):
        for age, item in enumerate(reversed(items)):
            rows.append(u)
            cols.append(item)
            data.append(decay ** age)
    return sp.csr_matrix((np.asarray(data, dtype=np.float32), (rows, cols)), shape=(len(histories), n_items))


def collaborative_scores(histories: Sequence[Sequence[int]], sim: sp.csr_matrix, decay: float) -> np.ndarray:
    return np.asarray((history_weights(histories, sim.shape[0], decay) @ sim).todense(), dtype=np.float32)


def standardise(scores: np.ndarray, known: np.ndarray | None = None) -> np.ndarray:
    """Per row: mean 0, standard deviation 1 over the `known` columns; the others get 0, the average."""
    if known is None:
        known = np.ones(scores.shape[1], dtype=bool)
    part = scores[:, known]
    mean = part.mean(axis=1, keepdims=True)
    std = part.std(axis=1, keepdims=True)
    return np.where(known[None, :], (scores - mean) / np.maximum(std, 1e-9), 0.0).astype(np.float32)


def known_items(sim: sp.csr_matrix) -> np.ndarray:
    """Items with any co-occurrence: a cold item has none, and its collaborative score is missing, not low."""
    return np.asarray(sim.getnnz(axis=0) > 0)


def fuse(text: np.ndarray, collaborative: np.ndarray, weight: float, known: np.ndarray | None = None) -> np.ndarray:
    """The fused score; a cold item's collaborative part is the average (0), so its text alone places it."""
    return standardise(text) + weight * standardise(collaborative, known) if weight else text


@dataclass(frozen=True)
class Fusion:
    weight: float
    decay: float

    def apply(self, text: np.ndarray, histories: Sequence[Sequence[int]], sim: sp.csr_matrix) -> np.ndarray:
        if not self.weight:
            return text
        return fuse(text, collaborative_scores(histories, sim, self.decay), self.weight, known_items(sim))
