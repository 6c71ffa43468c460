"""Sampled softmax for the two towers: in-batch negatives plus sampled ones, with the logQ correction.

Each training example is (a user's history before position t, the item at t). Its item must outscore
the batch's other target items and `sampled` items drawn uniformly from the items training saw. In-batch
negatives are drawn in proportion to how often an item is a target, so popular items would be pushed
down for being popular; following Yi et al. (RecSys 2019, "Sampling-bias-corrected neural modeling")
every column's logit is reduced by the log of its expected count among a batch's candidates:
log(B·p_target(j) + S/N_trained), the in-batch and the uniform sampler together. An item that is the target of
two examples of a batch is one column with two positives; columns holding an item of the example's own
recent history are masked (they are not negatives: the user chose them). With the hybrid item tower, half
the columns of every step are scored by their text alone (ID_DROPOUT), so the text tower stays usable for
items without an id.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from stepwise.data.batching import collate
from stepwise.precision import autocast

#: share of a batch's candidate items scored without their id vector, as a cold item is (DropoutNet, Volkovs
#: et al., NeurIPS 2017): without it the user tower learns to point at id vectors, and a new item's text
#: vector, which has none, ranked 28th of 49 for the demo's science-fiction fan (bench/NOTES.md)
ID_DROPOUT = 0.5


class SampledSoftmax:
    """`f(model, batch) -> (loss, logs)` for the shared loop. A batch holds the users' history token ids,
    "target" (the catalogue row of the next item) and "recent" (their history's rows plus one, 0 padded)."""

    def __init__(self, item_ids: list[list[int]], id_rows: list[int], target_counts: np.ndarray, pad_id: int,
                 precision: str, *, sampled: int, batch_size: int, seed: int = 0) -> None:
        """`id_rows[j]`: item j's row in the id table, 0 for an item training never saw (never a negative)."""
        self.item_ids, self.id_rows, self.pad_id, self.precision = item_ids, id_rows, pad_id, precision
        self.sampled = sampled
        # negatives are drawn among the items training saw: an item nobody interacted with is unknown, not
        # disliked, and drawing it taught the towers to rank every new item last (bench/NOTES.md)
        self.pool = np.flatnonzero(np.asarray(id_rows) > 0)
        p_target = target_counts / max(target_counts.sum(), 1)
        p_sampled = np.zeros(len(item_ids))
        p_sampled[self.pool] = sampled / max(len(self.pool), 1)
        self.log_q = np.log(batch_size * p_target + p_sampled + 1e-12).astype(np.float32)
        self.rng = np.random.default_rng(seed)

    def __call__(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        targets = batch["target"].tolist()
        columns = list(dict.fromkeys(targets))
        if self.sampled and len(self.pool):
            draws = self.rng.choice(self.pool, size=self.sampled).tolist()
            columns = list(dict.fromkeys(columns + draws))
        where = {item: i for i, item in enumerate(columns)}
        items = collate([{"input_ids": self.item_ids[j]} for j in columns], self.pad_id)
        dropped = self.rng.random(len(columns)) < ID_DROPOUT  # these columns play cold items this step
        rows = torch.tensor([0 if drop else self.id_rows[j] for j, drop in zip(columns, dropped)])
        unwrapped = getattr(model, "module", model)
        with autocast(self.precision):
            users = model(batch["input_ids"], batch["attention_mask"])
            vectors = unwrapped.items(items["input_ids"], items["attention_mask"], rows)
        logits = unwrapped.scale * users.float() @ vectors.float().T
        logits = logits - torch.from_numpy(self.log_q[columns])[None, :]
        target = torch.tensor([where[t] for t in targets])
        mask = torch.zeros_like(logits, dtype=torch.bool)
        for i, row in enumerate(batch["recent"].tolist()):
            for shifted in row:
                item = shifted - 1
                if item >= 0 and item in where and where[item] != target[i]:
                    mask[i, where[item]] = True
        logits = logits.masked_fill(mask, -1e4)
        loss = torch.nn.functional.cross_entropy(logits, target)
        accuracy = (logits.argmax(dim=1) == target).float().mean()
        return loss, {"in_batch_accuracy": float(accuracy), "scale": float(unwrapped.scale.detach()),
                      "candidates": float(len(columns))}


def features(histories: list[list[int]], targets: list[int], recent_rows: list[list[int]],
             item_ids: list[list[int]]) -> list[dict[str, Any]]:
    """The loop's features; `_tokens` counts both towers' tokens for the FLOP accounting. "recent" is
    padded like the token ids (with 0), so rows are stored plus one and cut at the text's token count."""
    return [{"input_ids": ids, "target": t, "recent": [r + 1 for r in rows[:len(ids)]],
             "_tokens": [len(ids), len(item_ids[t])]}
            for ids, t, rows in zip(histories, targets, recent_rows)]
