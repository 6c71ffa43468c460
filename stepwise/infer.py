"""Batched inference shared by evaluation during training, `evaluate`, `predict` and the server."""

from __future__ import annotations

import numpy as np

from stepwise.backends import Backend
from stepwise.data.batching import Feature, pad, sorted_batches
from stepwise.tasks.base import Task


def predict_features(backend: Backend, task: Task, features: list[Feature], *, batch_size: int,
                     pad_id: int) -> list[np.ndarray]:
    """Probabilities per feature, in the order given; batches are formed longest-first internally."""
    out: list[np.ndarray | None] = [None] * len(features)
    for idx in sorted_batches([len(f["input_ids"]) for f in features], batch_size):
        batch = pad([features[i] for i in idx], pad_id)
        for i, probs in zip(idx, task.decode(backend.run(batch), batch)):
            out[i] = probs
    return out  # type: ignore[return-value]
