"""The anchors of bench/recommend.py: what users pick today for next-item recommendation, one function each.

Every anchor is `f(bench, seed) -> Result`: scores for every test user over the whole catalogue (column j is
`bench.split.items[j]`) and its training seconds. They all read the same split (stepwise.tasks.recommend.data) and
are scored by the same full-ranking metrics (stepwise.tasks.recommend.metrics), seen items excluded.

What the ID models train on for the test ranking: each user's history before the test item (train + the dev
item), cold items left out — the split `history(user, "test")`. The content model reads the same histories as
text; it is the only anchor that can score a cold item.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from stepwise.tasks.recommend.data import Split, read_interactions, read_items, split_leave_last_out
from stepwise.tasks.recommend.metrics import rank_metrics


class Result(NamedTuple):
    name: str
    scores: np.ndarray          # [test users, items]
    train_seconds: float | None
    p50_ms: float | None = None  # one user's recommend call over the catalogue, where a row measures it


@dataclass
class Bench:
    """The split and everything every row needs from it, built once per process."""

    split: Split
    texts: list[str]                 # item texts, catalogue order
    users: list[str]                 # test users, split order
    targets: np.ndarray              # [users] catalogue index of the test item
    exclude: list[list[int]]         # what each user had before the test item
    histories: list[list[int]]       # what a model reads for the test ranking (cold items left out)
    cold_rows: np.ndarray            # rows of users whose test item is cold
    read_skipped: dict[str, int]

    @property
    def matrix(self) -> sp.csr_matrix:
        """[users, items] binary interactions of the test histories: the ID models' training data."""
        rows = np.repeat(np.arange(len(self.users)), [len(h) for h in self.histories])
        cols = np.fromiter((j for h in self.histories for j in h), dtype=np.int64)
        return sp.csr_matrix((np.ones(len(cols), dtype=np.float32), (rows, cols)),
                             shape=(len(self.users), len(self.texts)))


def load(root: Path, *, cold_fraction: float = 0.1, seed: int = 0, min_rating: float | None = None,
         ties: str = "file") -> Bench:
    """The split of root's ratings.tsv/items.tsv. `ties="item"` orders a user's interactions of the same second by
    item id instead of by file line (the split keeps the order it is given)."""
    items = read_items(root / "items.tsv")
    interactions, skipped = read_interactions(root / "ratings.tsv", min_rating=min_rating, items=items)
    if ties == "item":
        interactions.sort(key=lambda r: (r.timestamp, (0, int(r.item), "") if r.item.isdigit() else (1, 0, r.item)))
    split = split_leave_last_out(interactions, items, cold_fraction=cold_fraction, seed=seed)
    index = {item: j for j, item in enumerate(split.items)}
    users = list(split.test)
    return Bench(split=split, texts=[items[i] for i in split.items], users=users,
                 targets=np.array([index[split.test[u]] for u in users]),
                 exclude=[sorted(index[i] for i in split.seen(u, "test")) for u in users],
                 histories=[[index[i] for i in split.history(u, "test")] for u in users],
                 cold_rows=np.array([r for r, u in enumerate(users) if split.test[u] in split.cold_items],
                                    dtype=np.int64),
                 read_skipped={**skipped, **split.skipped})


def evaluate(bench: Bench, scores: np.ndarray, k: int = 10) -> dict[str, float]:
    """Overall metrics on every test user and HR/NDCG on the users whose test item is cold."""
    overall = rank_metrics(scores, bench.targets, bench.exclude, k=k)
    rows = bench.cold_rows
    cold = rank_metrics(scores[rows], bench.targets[rows], [bench.exclude[r] for r in rows], k=k) \
        if rows.size else {}
    return {**overall, **{f"cold {name}": value for name, value in cold.items() if name in (f"hr@{k}", f"ndcg@{k}")}}


def seeded(row: Callable[[Bench, int], Result]) -> Callable[[Bench, int], Result]:
    """Marks a row whose result depends on its seed: the bench runs it once per seed."""
    row.seeded = True
    return row


def _timed(fit: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    out = fit()
    return out, time.perf_counter() - start


# ------------------------------------------------------------------------------------------ the anchors


def most_popular(bench: Bench, seed: int) -> Result:
    """Every user gets the items most users had (in the training histories)."""
    counts, seconds = _timed(lambda: np.asarray(bench.matrix.sum(axis=0), dtype=np.float64).ravel())
    return Result("most-popular", np.tile(counts, (len(bench.users), 1)), seconds)


def item_knn(bench: Bench, seed: int) -> Result:
    """ItemKNN: an item's score is the sum of its cosine similarities (over users) to the user's items; every
    neighbour is kept (implicit's CosineRecommender with K = the catalogue)."""
    from implicit.nearest_neighbours import CosineRecommender

    matrix = bench.matrix
    model = CosineRecommender(K=matrix.shape[1])
    _, seconds = _timed(lambda: model.fit(matrix, show_progress=False))
    similarity = model.similarity.toarray() if sp.issparse(model.similarity) else np.asarray(model.similarity)
    return Result("ItemKNN (cosine)", np.asarray(matrix @ similarity), seconds)


def _factors(model) -> tuple[np.ndarray, np.ndarray]:
    users, items = model.user_factors, model.item_factors
    to_numpy = getattr(model, "to_cpu", None)
    if not isinstance(users, np.ndarray) and to_numpy is not None:
        model = to_numpy()
        users, items = model.user_factors, model.item_factors
    return np.asarray(users), np.asarray(items)


@seeded
def implicit_als(bench: Bench, seed: int) -> Result:
    """implicit's ALS (Hu, Koren & Volinsky 2008), 64 factors, 15 iterations, its other defaults."""
    from implicit.als import AlternatingLeastSquares

    matrix = bench.matrix
    model = AlternatingLeastSquares(factors=64, iterations=15, random_state=seed)
    _, seconds = _timed(lambda: model.fit(matrix, show_progress=False))
    users, items = _factors(model)
    return Result("implicit ALS", users @ items.T, seconds)


@seeded
def implicit_bpr(bench: Bench, seed: int) -> Result:
    """implicit's BPR (Rendle et al. 2009), 64 factors, 100 iterations, its other defaults."""
    from implicit.bpr import BayesianPersonalizedRanking

    matrix = bench.matrix
    model = BayesianPersonalizedRanking(factors=64, iterations=100, random_state=seed)
    _, seconds = _timed(lambda: model.fit(matrix, show_progress=False))
    users, items = _factors(model)
    return Result("implicit BPR", users @ items.T, seconds)


def tfidf_content(bench: Bench, seed: int) -> Result:
    """Content-based: a user is the mean of their history items' TF-IDF vectors (scikit-learn), items are
    ranked by dot product with it. Reads item texts only, so it scores a cold item like any other."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    def fit():
        vectors = TfidfVectorizer().fit_transform(bench.texts)
        matrix = bench.matrix
        profiles = sp.diags(1.0 / np.maximum(matrix.sum(axis=1).A.ravel(), 1)) @ matrix @ vectors
        return profiles, vectors

    (profiles, vectors), seconds = _timed(fit)
    return Result("TF-IDF content", (profiles @ vectors.T).toarray(), seconds)


SASREC_EPOCHS = 200  # chosen on dev (bench/NOTES.md): NDCG@10 on the dev item, trained on the dev histories


@seeded
def sasrec(bench: Bench, seed: int) -> Result:
    """SASRec, our small faithful port (bench/recommend_sasrec.py says why not a library's): BCE with one sampled
    negative, 2 blocks, hidden 50, max length 200. Train seconds include scoring the test users once."""
    from recommend_sasrec import train_and_score

    (scores, _), seconds = _timed(lambda: train_and_score(bench.histories, len(bench.texts), seed,
                                                          epochs=SASREC_EPOCHS))
    return Result("SASRec (ours, BCE)", scores, seconds)
