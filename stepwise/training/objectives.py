"""Training objectives: what one micro-batch's loss is. A small registry the recipes pick from.

An objective is `f(model, batch) -> (loss, logs)`; logs are floats averaged into metrics.jsonl.
Built in: "supervised" (cross-entropy on gold labels) and "reinforce" (policy gradient for a reward).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from stepwise.data.batching import IGNORE_INDEX, Feature
from stepwise.precision import autocast
from stepwise.tasks.base import Task

Objective = Callable[[torch.nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, dict[str, float]]]


@dataclass
class ObjectiveContext:
    """What an objective may be built from."""

    task: Task
    model: torch.nn.Module
    config: Any  # TrainConfig
    precision: str
    train_features: list[Feature]
    reward: Callable[[Any, Any], float] | None = None


def labels_per_batch(features: list[Feature], batch_size: int) -> float:
    """The average number of labeled positions in a batch: the token-weighted loss's constant divisor."""
    def count(labels: Any) -> int:
        return sum(y != IGNORE_INDEX for y in labels) if isinstance(labels, list) else 1

    return batch_size * sum(count(f["labels"]) for f in features) / max(len(features), 1)


def supervised(ctx: ObjectiveContext) -> Objective:
    """Cross-entropy against the gold labels (label smoothing, batch- or token-weighted)."""
    cfg = ctx.config
    per_batch = labels_per_batch(ctx.train_features, cfg.batch_size) if cfg.loss_weighting == "token" else None

    def objective(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        with autocast(ctx.precision):
            logits = model(**batch)
        return ctx.task.loss(logits, batch, cfg.label_smoothing, per_batch), {}

    return objective


def reinforce(ctx: ObjectiveContext) -> Objective:
    """REINFORCE with a baseline, entropy bonus and KL to the starting policy (stepwise.rl)."""
    from stepwise.rl import ReinforceObjective

    cfg = ctx.config
    return ReinforceObjective(ctx.task, ctx.model, ctx.reward, baseline=cfg.baseline, entropy_coef=cfg.entropy_coef,
                              kl_coef=cfg.kl_coef, ce_coef=cfg.ce_coef, precision=ctx.precision)


OBJECTIVES: dict[str, Callable[[ObjectiveContext], Objective]] = {"supervised": supervised, "reinforce": reinforce}


def build_objective(name: str, ctx: ObjectiveContext) -> Objective:
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r} (known: {', '.join(OBJECTIVES)})")
    return OBJECTIVES[name](ctx)
