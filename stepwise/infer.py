"""Batched inference shared by evaluation during training, `evaluate`, `predict` and the server."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import numpy as np

from stepwise.backends import Backend
from stepwise.data.batching import pad, sorted_batches
from stepwise.example import Feature

if TYPE_CHECKING:
    from stepwise.tasks.base import Task


def predict_features(backend: Backend, task: Task, features: list[Feature], *, batch_size: int,
                     pad_id: int) -> list[np.ndarray]:
    """Probabilities per feature, in the order given; batches are formed longest-first internally.

    A backend with `run_many` (ONNX Runtime) may run several batches side by side; batches are padded as
    they are needed, so only those in flight are held.
    """
    out: list[np.ndarray | None] = [None] * len(features)
    order = sorted_batches([len(f["input_ids"]) for f in features], batch_size)
    to_run, to_decode = itertools.tee(pad([features[i] for i in idx], pad_id) for idx in order)
    run_many = getattr(backend, "run_many", None)
    logits = run_many(to_run) if run_many is not None else map(backend.run, to_run)
    for idx, batch, batch_logits in zip(order, to_decode, logits):
        for i, probs in zip(idx, task.decode(batch_logits, batch)):
            out[i] = probs
    return out  # type: ignore[return-value]
