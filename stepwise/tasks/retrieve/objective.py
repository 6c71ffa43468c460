"""The contrastive objective: symmetric InfoNCE with in-batch negatives, plus mined hard negatives.

Each query's passage must outscore every other passage of the batch (query → passage), and each
passage must pick out its own queries among the batch's (passage → query); the two cross-entropies are
averaged, as in CLIP. A passage that two queries of one batch share is one column with two positives,
never a negative for either. With hard negatives, each query also brings one passage drawn from its
mined list (a near miss of the starting model), which every query of the batch sees as a negative.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from stepwise.data.batching import collate
from stepwise.precision import autocast


class Contrastive:
    """`f(model, batch) -> (loss, logs)` for the shared loop. A batch holds the queries' token ids and each
    query's passage ("passage") and mined negatives ("negatives") as indices into the tokenised pool."""

    def __init__(self, pool_ids: list[list[int]], pad_id: int, precision: str, *, seed: int = 0) -> None:
        self.pool_ids, self.pad_id, self.precision = pool_ids, pad_id, precision
        self.rng = np.random.default_rng(seed)

    def __call__(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        positives = batch["passage"].tolist()
        docs = list(dict.fromkeys(positives))  # distinct passages: a shared one is one column
        if "negatives" in batch:
            for row in batch["negatives"].tolist():
                choices = [d for d in row if d >= 0 and d not in positives]
                if choices:
                    docs.append(int(self.rng.choice(choices)))
            docs = list(dict.fromkeys(docs))
        column = {d: i for i, d in enumerate(docs)}
        passages = collate([{"input_ids": self.pool_ids[d]} for d in docs], self.pad_id)
        with autocast(self.precision):
            queries = model(batch["input_ids"], batch["attention_mask"])
            vectors = model(passages["input_ids"], passages["attention_mask"])
        unwrapped = getattr(model, "module", model)  # DDP wraps the bi-encoder
        logits = unwrapped.scale * queries @ vectors.T  # [queries, passages]
        target = torch.tensor([column[p] for p in positives])
        to_passage = torch.nn.functional.cross_entropy(logits, target)
        # passage → query, over the batch's positive passages; every query of a shared passage is a positive
        n_pos = len(dict.fromkeys(positives))
        back = logits[:, :n_pos].T  # [positive passages, queries]
        is_pos = target[None, :] == torch.arange(n_pos)[:, None]
        to_query = (torch.logsumexp(back, dim=1) - torch.logsumexp(back.masked_fill(~is_pos, -1e4), dim=1)).mean()
        loss = (to_passage + to_query) / 2
        accuracy = (logits.argmax(dim=1) == target).float().mean()
        return loss, {"in_batch_accuracy": float(accuracy), "scale": float(unwrapped.scale.detach())}


def mine_negatives(query_vectors: np.ndarray, pool_vectors: np.ndarray, gold: list[int], k: int,
                   skip: int = 0) -> list[list[int]]:
    """Each query's top-k passages by the given vectors, its gold passage left out (a near miss each).

    `skip` leaves out the very top ranks too: in FAQ-like pools the nearest other passage is often a
    paraphrase of the gold one, and training it away hurts (a "false negative").
    """
    scores = query_vectors @ pool_vectors.T
    scores[np.arange(len(gold)), gold] = -np.inf
    top = np.argsort(-scores, axis=1)[:, skip:skip + k]
    return top.tolist()


def features(query_ids: list[list[int]], gold: list[int], pool_ids: list[list[int]],
             negatives: list[list[int]] | None) -> list[dict[str, Any]]:
    """The loop's features: query tokens, the gold passage's pool index, the mined negatives; `_tokens`
    counts both towers' tokens for the FLOP accounting."""
    out = []
    for i, (ids, doc) in enumerate(zip(query_ids, gold)):
        feature: dict[str, Any] = {"input_ids": ids, "passage": doc, "_tokens": [len(ids), len(pool_ids[doc])]}
        if negatives is not None:
            feature["negatives"] = negatives[i]
        out.append(feature)
    return out
