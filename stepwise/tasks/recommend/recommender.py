"""A trained recommender: item vectors in an index, the user tower, the collaborative step, one `recommend`.

What a recommender run keeps beside its encoder (in `model/recommend/`, written by the recipe):

    items/            a `stepwise index` Index of the catalogue: id, text, and its vector (text + id vector)
    ids.npy           the learned id vectors (hybrid; row 0 = none), saved with the best weights
    users.jsonl       each known user's items in time order (for `--user`)
    similarity.npz    the item-item co-occurrence table of the collaborative step (sparse)
    settings.json     history length, token budgets, the fusion weight and decay chosen on dev

A request embeds one history text (the item vectors are precomputed), takes one product with the
catalogue's vectors, adds the collaborative score, and sorts: the p50 is measured in bench/recommend.py.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stepwise.errors import StepwiseError
from stepwise.tasks.recommend.towers import history_text, recent

SUBDIR = "recommend"
ITEMS, IDS, USERS, SIMILARITY, SETTINGS = "items", "ids.npy", "users.jsonl", "similarity.npz", "settings.json"
FIX = "the run's recommender files are missing or damaged: retrain it with --overwrite"


def user_texts(histories: Sequence[Sequence[int]], texts: Sequence[str], n: int) -> list[str]:
    """The user tower's input for each history of catalogue rows (time order)."""
    return [history_text([texts[i] for i in recent(list(h), n)]) for h in histories]


def item_vectors(embedder: Any, item_token_ids: list[list[int]], id_rows: Sequence[int],
                 id_vectors: np.ndarray | None) -> np.ndarray:
    """The catalogue's vectors: the text tower's, plus the learned id vector of items training saw."""
    text = embedder.embed_ids(item_token_ids)
    if id_vectors is None:
        return text
    rows = np.asarray(id_rows)
    both = text + id_vectors[rows]
    both /= np.maximum(np.linalg.norm(both, axis=1, keepdims=True), 1e-12)
    return np.where((rows > 0)[:, None], both, text).astype(np.float32)


class Recommender:
    """Open a run once, then `recommend(...)` per request (CLI, server, bench)."""

    def __init__(self, embedder: Any, index: Any, users: dict[str, list[str]], similarity: Any,
                 settings: dict[str, Any], source: str) -> None:
        self.embedder, self.index, self.users, self.similarity = embedder, index, users, similarity
        self.settings, self.source = settings, source
        self.items = [p.id for p in index.passages]
        self.texts = [p.text for p in index.passages]
        self.row = {item: i for i, item in enumerate(self.items)}

    @classmethod
    def open(cls, run: str | Path, *, backend: str = "auto", threads: int | None = None) -> Recommender:
        import scipy.sparse as sp

        from stepwise.modeldir import read_meta
        from stepwise.rundir import RunDir
        from stepwise.tasks.retrieve.encoder import load_encoder
        from stepwise.tasks.retrieve.index import Index

        model_dir = RunDir.open(run).model_dir
        meta = read_meta(model_dir)
        if meta.get("task") != "recommend":
            raise StepwiseError(f"a {meta.get('task')} run, not a recommender", path=run,
                                fix="train one with `stepwise train --task recommend --interactions F --items F`")
        where = model_dir / SUBDIR
        try:
            settings = json.loads((where / SETTINGS).read_text(encoding="utf-8"))
            users = {r["user"]: list(r["items"]) for r in map(json.loads, (where / USERS).read_text(
                encoding="utf-8").splitlines()) if r}
            similarity = sp.load_npz(where / SIMILARITY).tocsr()
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise StepwiseError(f"the recommender files are missing or damaged ({type(err).__name__})",
                                path=where, fix=FIX) from None
        index = Index.load(where / ITEMS)
        embedder, meta = load_encoder(run, backend=backend, threads=threads, batch_size=1)
        index.check_model(meta["fingerprint"], str(run))
        embedder.max_length = settings["max_length"]
        if similarity.shape != (len(index.passages),) * 2:
            raise StepwiseError("the co-occurrence table and the item index disagree (damaged)", path=where, fix=FIX)
        return cls(embedder, index, users, similarity, settings, meta["source"])

    # --- requests ---------------------------------------------------------------------------------------
    def history_of(self, user: str | None, history: Sequence[str] | None) -> list[str]:
        """The history a request names: a known user's items, or item ids given in time order."""
        if (user is None) == (history is None):
            raise StepwiseError("give a user or a history (item ids), not both and not neither",
                                fix="e.g. --user 196, or --history 242,302")
        if user is not None:
            if user not in self.users:
                raise StepwiseError(f"unknown user {user!r}: not in the run's interaction log",
                                    fix="pass their items with --history ID,ID,... instead")
            return list(self.users[user])
        items = [str(i).strip() for i in history or []]
        if not items or not all(items):
            raise StepwiseError("the history is empty or holds an empty item id", fix="e.g. --history 242,302")
        unknown = [i for i in items if i not in self.row]
        if unknown:
            raise StepwiseError(f"unknown item {unknown[0]!r}: not in the run's catalogue"
                                + (f" ({len(unknown)} unknown)" if len(unknown) > 1 else ""),
                                fix="use item ids of the --items file the run was trained on")
        return items

    def scores(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """[histories, items]: the two-tower score, fused with the collaborative one as chosen on dev."""
        from stepwise.tasks.recommend.cooccur import Fusion

        texts = user_texts(histories, self.texts, self.settings["history_items"])
        users = self.embedder.embed(texts)
        text = users @ self.index.vectors.T
        fusion = Fusion(self.settings["fusion"]["weight"], self.settings["fusion"]["decay"])
        return fusion.apply(text, histories, self.similarity)

    def recommend(self, *, user: str | None = None, history: Sequence[str] | None = None, k: int = 10,
                  exclude_seen: bool = False) -> list[dict[str, Any]]:
        """The k best items for one user or history: [{item, text, score}], best first."""
        return self.recommend_many([{"user": user, "history": history, "k": k, "exclude_seen": exclude_seen}])[0]

    def recommend_many(self, requests: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """`recommend` for several requests ({user | history, k, exclude_seen}) in one batch of user texts."""
        for request in requests:
            if request.get("k", 10) < 1:
                raise StepwiseError(f"k must be at least 1, got {request['k']}", fix="e.g. k 10")
        rows = [[self.row[i] for i in self.history_of(r.get("user"), r.get("history"))] for r in requests]
        scores = self.scores(rows).astype(np.float64)
        return [self._top(row_scores, seen, r.get("k", 10), r.get("exclude_seen", False))
                for row_scores, seen, r in zip(scores, rows, requests)]

    def _top(self, scores: np.ndarray, seen: list[int], k: int, exclude_seen: bool) -> list[dict[str, Any]]:
        if exclude_seen:
            scores[seen] = -np.inf
        k = min(k, int(np.isfinite(scores).sum()))
        if k == 0:  # every item of the catalogue is in the history
            return []
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        top = top[np.argsort(-scores[top], kind="stable")][:k]
        return [{"item": self.items[j], "text": self.texts[j], "score": round(float(scores[j]), 6)} for j in top]
