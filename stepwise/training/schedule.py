"""Learning-rate schedule as a pure function of the step (nanoGPT style): easy to test and to resume."""

from __future__ import annotations

import math


def warmup_steps(total_steps: int, warmup_ratio: float) -> int:
    return math.ceil(total_steps * warmup_ratio)


def lr_at(step: int, *, base_lr: float, total_steps: int, warmup: int, schedule: str) -> float:
    """Learning rate for optimizer step `step` (0-based): linear warmup, then linear/cosine/constant."""
    if warmup > 0 and step < warmup:
        return base_lr * step / warmup
    if schedule == "constant":
        return base_lr
    progress = (step - warmup) / max(1, total_steps - warmup)
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "linear":
        return base_lr * (1.0 - progress)
    if schedule == "cosine":
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {schedule!r}")
