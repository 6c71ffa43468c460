"""Batched inference shared by evaluation during training, `evaluate` and `predict`."""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from stepwise.data.batching import Feature, collate, sorted_batches
from stepwise.tasks.base import Task


def resolve_precision(precision: str) -> str:
    """"auto" picks bf16 where the CPU has native bf16 dot products (AVX-512 BF16 / AMX), else fp32."""
    if precision != "auto":
        return precision
    has_bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    has_amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    return "bf16" if (has_bf16 or has_amx) else "fp32"


def autocast(precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision: matmuls in bf16, weights and optimizer state stay fp32."""
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.inference_mode()
def predict_features(model: torch.nn.Module, task: Task, features: list[Feature], *, batch_size: int,
                     precision: str, pad_id: int) -> list[np.ndarray]:
    """Probabilities per feature, in the order given; batches are formed longest-first internally."""
    was_training = model.training
    model.eval()
    out: list[np.ndarray | None] = [None] * len(features)
    try:
        for idx in sorted_batches([len(f["input_ids"]) for f in features], batch_size):
            batch = collate([features[i] for i in idx], pad_id)
            with autocast(precision):
                logits = model(**batch)
            for i, probs in zip(idx, task.decode(logits, batch)):
                out[i] = probs
    finally:
        model.train(was_training)
    return out  # type: ignore[return-value]
