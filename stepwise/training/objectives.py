"""Training objectives: what one micro-batch's loss is. A small registry the recipes pick from.

An objective is `f(model, batch) -> (loss, logs)`; logs are floats averaged into metrics.jsonl.
Built in: "supervised" (cross-entropy on gold labels), "reinforce" (policy gradient for a reward) and
"distill" (a frozen teacher's soft targets mixed with the gold labels).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from stepwise.example import IGNORE_INDEX, UNLABELED, Feature
from stepwise.precision import autocast
from stepwise.tasks.base import Task

Objective = Callable[[torch.nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, dict[str, float]]]


@dataclass
class Teacher:
    """The frozen model a student learns from, and how much: soft targets at `temperature`, weight `alpha`."""

    model: torch.nn.Module
    temperature: float = 2.0
    alpha: float = 0.5


@dataclass
class ObjectiveContext:
    """What an objective may be built from."""

    task: Task
    model: torch.nn.Module
    config: Any  # TrainConfig
    precision: str
    train_features: list[Feature]
    reward: Callable[[Any, Any], float] | None = None
    teacher: Teacher | None = None
    tokenizer: Any = None  # for objectives that run the model on new text (an editor's later passes)


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
    """REINFORCE with a baseline, entropy bonus and KL to the starting policy (stepwise.reinforce)."""
    from stepwise.reinforce import ReinforceObjective

    cfg = ctx.config
    # a task whose actions build the prediction reads its own options (an editor: the passes the reward waits for)
    follow = {"config": cfg, "model": ctx.model, "tokenizer": ctx.tokenizer, "precision": ctx.precision}
    return ReinforceObjective(ctx.task, ctx.model, ctx.reward, baseline=cfg.baseline, entropy_coef=cfg.entropy_coef,
                              kl_coef=cfg.kl_coef, ce_coef=cfg.ce_coef, precision=ctx.precision,
                              outcomes=ctx.task.action_outcomes(ctx.train_features, **follow))


def distill(ctx: ObjectiveContext) -> Objective:
    """Knowledge distillation: alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * cross-entropy.

    The soft term covers every labeled position (a text, or each labeled word, as in `Task.loss`), the
    UNLABELED ones of unlabeled text (`distill --unlabeled`) included; the gold term covers the gold labels
    only and is 0 in a batch without any. Both are weighted like "supervised" (`--loss-weighting`). T^2
    keeps the soft term's gradient at the scale of the hard one whatever the temperature (Hinton et al.,
    2015). The teacher is frozen, in eval mode, under no_grad and the run's precision; logs "kd" (T^2 * KL)
    and "ce" so metrics.jsonl shows both.
    """
    if ctx.teacher is None:
        raise ValueError("the distill objective needs ObjectiveContext.teacher")
    cfg, teacher = ctx.config, ctx.teacher.model.eval()
    teacher.requires_grad_(False)
    temperature, alpha = ctx.teacher.temperature, ctx.teacher.alpha
    per_batch = labels_per_batch(ctx.train_features, cfg.batch_size) if cfg.loss_weighting == "token" else None

    def objective(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        with autocast(ctx.precision):
            logits = model(**batch)
        with torch.no_grad(), autocast(ctx.precision):
            soft = teacher(**batch)
        labels = batch["labels"]  # (B,) for a label per text, (B, S) for a tag per word
        labeled, unlabeled = labels != IGNORE_INDEX, labels == UNLABELED
        gold = {**batch, "labels": labels.masked_fill(unlabeled, IGNORE_INDEX)}
        gold_count = (labeled & ~unlabeled).sum().clamp(min=1)  # the mean over gold labels: 0 without any
        ce = ctx.task.loss(logits, gold, cfg.label_smoothing, per_batch if per_batch is not None else gold_count)
        kl = F.kl_div(F.log_softmax(logits.float() / temperature, -1), F.log_softmax(soft.float() / temperature, -1),
                      reduction="none", log_target=True).sum(-1)
        count = per_batch if per_batch is not None else labeled.sum().clamp(min=1)
        kd = temperature ** 2 * kl[labeled].sum() / count
        return alpha * kd + (1 - alpha) * ce, {"kd": kd.item(), "ce": ce.item()}

    return objective


OBJECTIVES: dict[str, Callable[[ObjectiveContext], Objective]] = {"supervised": supervised, "reinforce": reinforce,
                                                                   "distill": distill}


def build_objective(name: str, ctx: ObjectiveContext) -> Objective:
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r} (known: {', '.join(OBJECTIVES)})")
    return OBJECTIVES[name](ctx)
