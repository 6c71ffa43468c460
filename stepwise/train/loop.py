"""The training loop: one readable function shared by every task.

Read it top to bottom: batches → forward → loss → backward → (accumulate) → clip → step → log →
evaluate → checkpoint → early stop. Tasks only supply encoding, loss and metrics.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from stepwise.config import TrainConfig
from stepwise.data.batching import IGNORE_INDEX, Feature, collate, length_grouped_batches
from stepwise.infer import autocast
from stepwise.model import TaskModel
from stepwise.refine.policy import PREV, RefinerTraining
from stepwise.tasks.base import Task
from stepwise.train.checkpoint import CHECKPOINT, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from stepwise.train.flops import matmul_peak, non_embedding_params, train_flops
from stepwise.train.optim import build_optimizer
from stepwise.train.schedule import lr_at, warmup_steps


@dataclass
class LoopState:
    """Everything needed to continue a run exactly where its last checkpoint left it."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best: float | None = None
    best_step: int = 0
    bad_evals: int = 0
    done: bool = False
    stopped_early: bool = False
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    examples: int = 0
    tokens: int = 0
    flops: float = 0.0
    peak_flops: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


Evaluator = Callable[[], dict[str, Any]]
Objective = Callable[[torch.nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, dict[str, float]]]
WINDOW_KEYS = ("loss", "n", "examples", "seconds", "flops")


def supervised(task: Task, label_smoothing: float, precision: str, per_batch: float | None = None) -> Objective:
    """The default objective: cross-entropy against the gold labels."""

    def objective(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        with autocast(precision):
            logits = model(**batch)
        return task.loss(logits, batch, label_smoothing, per_batch), {}

    return objective


Callback = Callable[[LoopState], None]


def labels_per_batch(features: list[Feature], batch_size: int) -> float:
    """The average number of labeled positions in a batch: the token-weighted loss's constant divisor."""
    def count(labels: Any) -> int:
        return sum(y != IGNORE_INDEX for y in labels) if isinstance(labels, list) else 1

    return batch_size * sum(count(f["labels"]) for f in features) / max(len(features), 1)


class MetricsLog:
    """metrics.jsonl: one JSON line per log step; on resume, lines after the checkpoint are dropped."""

    def __init__(self, path: Path, keep_until_step: int | None) -> None:
        self.path = path
        if keep_until_step is None:
            path.write_text("")
        elif path.exists():
            kept = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= keep_until_step]
            path.write_text("".join(ln + "\n" for ln in kept))

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")


def fit(model: TaskModel, task: Task, train_features: list[Feature], evaluate: Evaluator, cfg: TrainConfig,
        run_dir: Path, *, pad_id: int, precision: str, save_best: Callable[[], None],
        callbacks: tuple[Callback, ...] = (), log_every: int = 10, objective: Objective | None = None) -> LoopState:
    """Optimize `model` on `train_features`; `evaluate()` scores dev, `save_best()` stores the best weights."""
    metric = cfg.dev_metric(task.default_metric)
    lengths = [len(f["input_ids"]) for f in train_features]
    micro_batches = math.ceil(len(train_features) / cfg.batch_size)
    steps_per_epoch = math.ceil(micro_batches / cfg.grad_accum)
    total = cfg.max_steps or math.ceil(cfg.epochs * steps_per_epoch)
    warmup = warmup_steps(total, cfg.warmup_ratio)
    optimizer = build_optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum)
    n_params, config = non_embedding_params(model), model.encoder.config
    peak = matmul_peak(precision)

    per_batch = labels_per_batch(train_features, cfg.batch_size) if cfg.loss_weighting == "token" else None
    objective = objective or supervised(task, cfg.label_smoothing, precision, per_batch)
    refiner = RefinerTraining(task, cfg.refine_noise, pad_id, precision) if PREV in model.extra_inputs else None
    state = LoopState()
    ckpt_path = run_dir / CHECKPOINT
    ckpt = load_checkpoint(ckpt_path) if cfg.resume else None
    if ckpt is not None:
        state = LoopState(**ckpt["state"])
        if not state.done:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
        set_rng_state(ckpt["rng"])
    log = MetricsLog(run_dir / "metrics.jsonl", state.step if ckpt is not None else None)

    def checkpoint(final: bool = False) -> None:
        # A finished run keeps only its state: the best weights are already in the run's model/.
        weights = {} if final else {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
        save_checkpoint(ckpt_path, {**weights, "state": asdict(state), "rng": rng_state()})

    def run_evaluation() -> bool:
        """Score dev, keep the best weights, checkpoint; True when early stopping says stop."""
        start = time.perf_counter()
        scores = evaluate()
        value = scores[metric]
        improved = state.best is None or value > state.best
        if improved:
            state.best, state.best_step, state.bad_evals = value, state.step, 0
            save_best()
        else:
            state.bad_evals += 1
        state.eval_seconds += time.perf_counter() - start
        record = {"step": state.step, "epoch": round(state.epoch + state.batch_in_epoch / micro_batches, 3),
                  "dev": {k: v for k, v in scores.items() if isinstance(v, (int, float))}, "best": state.best}
        state.history.append(record)
        log.write(record)
        stop = cfg.patience is not None and state.bad_evals >= cfg.patience
        state.stopped_early = stop
        checkpoint()
        return stop

    model.train()
    bar = tqdm(total=total, initial=state.step, disable=cfg.quiet, desc="train", unit="step", dynamic_ncols=True)
    window = dict.fromkeys(WINDOW_KEYS, 0.0)
    stop = state.done
    while not stop and state.step < total:
        order = (length_grouped_batches(lengths, cfg.batch_size, cfg.seed, state.epoch, cfg.group_pool)
                 if cfg.group_by_length
                 else _shuffled_batches(len(lengths), cfg.batch_size, cfg.seed, state.epoch))
        while state.batch_in_epoch < len(order) and state.step < total:
            tick = time.perf_counter()
            start = state.batch_in_epoch
            group = order[start:min(start + cfg.grad_accum, len(order))]
            lr = lr_at(state.step, base_lr=cfg.lr, total_steps=total, warmup=warmup, schedule=cfg.schedule)
            for param_group in optimizer.param_groups:
                param_group["lr"] = lr
            step_loss, extra = 0.0, {}
            for idx in group:
                feats = [train_features[i] for i in idx]
                if refiner is not None:
                    feats = refiner.inputs(model, feats)
                batch = collate(feats, pad_id)
                loss, logs = objective(model, batch)
                loss = loss / len(group)
                loss.backward()
                for key, value in logs.items():
                    extra[key] = extra.get(key, 0.0) + value / len(group)
                step_loss += loss.item()
                real = [len(f["input_ids"]) for f in feats]
                state.examples += task.units(feats)
                window["examples"] += task.units(feats)
                state.tokens += sum(real)
                flops = train_flops(n_params, config.num_hidden_layers, config.hidden_size, real)
                state.flops += flops
                window["flops"] += flops
            if cfg.clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            state.batch_in_epoch += len(group)
            elapsed = time.perf_counter() - tick
            state.train_seconds += elapsed
            window["loss"] += step_loss
            window["n"] += 1
            for key, value in extra.items():
                window[key] = window.get(key, 0.0) + value
            window["seconds"] += elapsed
            bar.update(1)
            if state.step % log_every == 0 or state.step == total:
                rate = window["examples"] / window["seconds"]
                mfu = window["flops"] / window["seconds"] / peak
                record = {"step": state.step, "epoch": round(state.epoch + state.batch_in_epoch / micro_batches, 3),
                          "loss": window["loss"] / window["n"], "lr": lr, "examples_per_s": rate, "mfu": mfu,
                          **{k: v / window["n"] for k, v in window.items() if k not in WINDOW_KEYS}}
                log.write(record)
                bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{lr:.2e}", ex_s=f"{rate:.1f}",
                                mfu=f"{mfu:.1%}")
                window = dict.fromkeys(WINDOW_KEYS, 0.0)
            for callback in callbacks:
                callback(state)
            if cfg.eval_every and state.step % cfg.eval_every == 0 and state.step < total:
                if run_evaluation():
                    stop = True
                    break
        else:
            if state.batch_in_epoch >= len(order):
                state.epoch += 1
                state.batch_in_epoch = 0
                if not cfg.eval_every and state.step < total and run_evaluation():
                    stop = True
    bar.close()
    if not state.done:
        if not state.stopped_early:
            run_evaluation()
        state.done = True
        state.peak_flops = peak
        checkpoint(final=True)
    return state


def _shuffled_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Plain random batches (the Hugging Face Trainer default), for comparison runs."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=generator).tolist()
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]
