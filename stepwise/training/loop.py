"""The training loop: one readable function shared by every task and objective.

Read it top to bottom: batches → step (objective, accumulation, clipping) → log → evaluate → keep
the best → checkpoint → early stop. The parts live beside it: `batches` (shardable batch source),
`step`, `objectives`, `logger`, `early_stopping`, `checkpoint`. Tasks only supply encoding, loss and
metrics; callbacks see the state after every step and may return True to stop the run.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stepwise.example import Feature
from stepwise.layout import CHECKPOINT, METRICS
from stepwise.model import TaskModel
from stepwise.refine.policy import PREV, RefinerTraining
from stepwise.tasks.base import Task
from stepwise.threads import ThreadGovernor
from stepwise.training.batches import BatchSource
from stepwise.training.checkpoint import Checkpointer
from stepwise.training.distributed import Dist
from stepwise.training.dropout import use_mask_dropout
from stepwise.training.early_stopping import EarlyStopping
from stepwise.training.flops import matmul_peak
from stepwise.training.logger import Logger, MetricsLog, ProgressBar
from stepwise.training.objectives import Objective, ObjectiveContext, build_objective
from stepwise.training.optim import build_optimizer, freeze_embeddings
from stepwise.training.schedule import lr_at, warmup_steps
from stepwise.training.step import StepResult, TrainStep
from stepwise.training.used_rows import UsedRows

if TYPE_CHECKING:
    from stepwise.config import TrainConfig


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
    used_rows: bool = False  # the embedding trained as used rows only (the optimizer state's layout)
    threads: list[dict[str, Any]] = field(default_factory=list)  # thread counts used, from which step, and why
    history: list[dict[str, Any]] = field(default_factory=list)

    def summary(self, metric: str, precision: str, started: float) -> dict[str, Any]:
        """The run's training facts for results.json: time, throughput, steps, best dev score, MFU."""
        flops_per_s = self.flops / max(self.train_seconds, 1e-9)
        return {"seconds": round(self.train_seconds, 2), "eval_seconds": round(self.eval_seconds, 2),
                "wall_seconds": round(time.perf_counter() - started, 2),
                "examples_per_s": round(self.examples / max(self.train_seconds, 1e-9), 2),
                "steps": self.step, "best_step": self.best_step, f"best_dev_{metric}": self.best,
                "stopped_early": self.stopped_early, "precision": precision,
                "mfu": round(flops_per_s / max(self.peak_flops, 1), 4),
                "model_gflops_per_s": round(flops_per_s / 1e9, 1),
                "peak_gflops_per_s": round(self.peak_flops / 1e9, 1)}


Evaluator = Callable[[], dict[str, Any]]
Callback = Callable[[LoopState], "bool | None"]


class Window:
    """Training numbers accumulated between two log lines."""

    def __init__(self) -> None:
        self.steps, self.loss, self.examples, self.seconds, self.flops = 0, 0.0, 0, 0.0, 0.0
        self.logs: dict[str, float] = {}

    def add(self, result: StepResult, seconds: float) -> None:
        self.steps += 1
        self.loss += result.loss
        self.examples += result.examples
        self.seconds += seconds
        self.flops += result.flops
        for key, value in result.logs.items():
            self.logs[key] = self.logs.get(key, 0.0) + value

    def record(self, state: LoopState, epoch: float, lr: float, peak: float) -> dict[str, Any]:
        return {"step": state.step, "epoch": epoch, "loss": self.loss / self.steps, "lr": lr,
                "examples_per_s": self.examples / self.seconds, "mfu": self.flops / self.seconds / peak,
                **{k: v / self.steps for k, v in self.logs.items()}}


PEAK_RECHECK_AFTER_S = 30.0  # runs this long probe the matmul peak again at the end and keep the better


def fit(model: TaskModel, task: Task, train_features: list[Feature], evaluate: Evaluator | None, cfg: TrainConfig,
        run_dir: Path, *, pad_id: int, precision: str, save_best: Callable[[], None],
        callbacks: tuple[Callback, ...] = (), log_every: int = 10, objective: Objective | None = None,
        resume: bool | None = None, loggers: list[Logger] | None = None, dist: Dist | None = None,
        step_inputs: Any | None = None, threads: ThreadGovernor | None = None) -> LoopState:
    """Optimize `model` on `train_features`; `evaluate()` scores dev, `save_best()` stores the best weights.

    `step_inputs` turns each micro-batch's features into model inputs (`inputs(model, feats)`, with a seeded
    `rng` saved in checkpoints); default: a refiner's previous predictions when the model reads them.
    `threads`, when given, counts the free cores again at every log step and changes torch's thread count
    when the machine's load has changed (stepwise.threads); its changes are kept in the state.
    Under torchrun (`dist`), each rank trains on its shard of every global batch; rank 0 alone evaluates
    (`evaluate` is None on the other ranks), saves, checkpoints and logs, and its decisions (scores, early
    stop) reach the others by broadcast.
    """
    dist = dist or Dist()
    metric = cfg.dev_metric(task.default_metric)
    source = BatchSource([len(f["input_ids"]) for f in train_features], cfg.batch_size, seed=cfg.seed,
                         group_by_length=cfg.group_by_length, pool=cfg.group_pool, rank=dist.rank, world=dist.world)
    total = cfg.max_steps or math.ceil(cfg.epochs * math.ceil(len(source) / cfg.grad_accum))
    warmup = warmup_steps(total, cfg.warmup_ratio)
    use_mask_dropout(model)  # same dropout, a cheaper mask (training/dropout.py)
    if cfg.freeze_embeddings:  # before the optimizer: it only sees what trains
        freeze_embeddings(model)
    refiner = step_inputs or (RefinerTraining(task, cfg.refine_noise, pad_id, precision, seed=cfg.seed)
                              if PREV in model.extra_inputs else None)
    checkpointer = Checkpointer(run_dir / CHECKPOINT, {"refiner": refiner.rng} if refiner else {})
    state = LoopState()
    saved = checkpointer.load() if (cfg.resume if resume is None else resume) and dist.is_main else None
    saved = dist.broadcast(saved)  # the other ranks (other machines, maybe) get rank 0's checkpoint
    if saved is not None:
        state = LoopState(**saved["state"])
    if threads is not None:  # a resumed run keeps the history of the runs before
        threads.changes[:0] = [c for c in state.threads if c not in threads.changes]
        state.threads = threads.changes
    # Only the embedding rows the data uses train (the same result as all of them: training/used_rows.py)
    # where a step's token ids are the features' and AdamW's decay of the other rows is one factor; a
    # resumed run keeps the layout its optimizer state was saved in.
    used_rows = (UsedRows(model, (f["input_ids"] for f in train_features), pad_id)
                 if cfg.embedding_update == "used_rows" and not cfg.freeze_embeddings and cfg.optimizer == "adamw"
                 and (refiner is None or getattr(refiner, "keeps_tokens", False))
                 and (saved is None or state.used_rows) else None)
    state.used_rows = used_rows is not None
    optimizer = build_optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum)
    if used_rows is not None:
        used_rows.track(optimizer)
    plain = used_rows.plain if used_rows is not None else contextlib.nullcontext
    objective = objective or build_objective("supervised", ObjectiveContext(task, model, cfg, precision,
                                                                            train_features))
    train_step = TrainStep(model, optimizer, objective, task, pad_id=pad_id, clip=cfg.clip, refiner=refiner,
                           dist=dist)
    stopping = EarlyStopping(cfg.patience, cfg.eval_every)
    peak = matmul_peak(precision) * dist.world  # every rank's share of the machine(s) counts
    if saved is not None and not state.done:
        with plain():
            model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
    train_step.attach(dist.wrap(model))  # after loading: DDP starts every rank from rank 0's weights
    if not dist.is_main:
        loggers = []
    elif loggers is None:
        loggers = [MetricsLog(run_dir / METRICS, state.step if saved is not None else None),
                   ProgressBar(total, state.step, disable=cfg.quiet)]

    def epoch_position() -> float:
        return round(state.epoch + state.batch_in_epoch / len(source), 3)

    def evaluation() -> bool:
        """Score dev, keep the best weights, checkpoint; True when early stopping says stop."""
        with plain():
            return _evaluation()

    def _evaluation() -> bool:
        start = time.perf_counter()
        scores = dist.broadcast(evaluate() if dist.is_main else None)
        improved, state.bad_evals, state.stopped_early = stopping.update(state.best, state.bad_evals, scores[metric])
        if improved:
            state.best, state.best_step = scores[metric], state.step
            if dist.is_main:
                save_best()
        state.eval_seconds += time.perf_counter() - start
        record = {"step": state.step, "epoch": epoch_position(),
                  "dev": {k: v for k, v in scores.items() if isinstance(v, (int, float))}, "best": state.best}
        state.history.append(record)
        for logger in loggers:
            logger.evaluation(record)
        if dist.is_main:
            checkpointer.save(asdict(state), model, optimizer)
        return state.stopped_early

    model.train()
    window = Window()
    stop = state.done
    while not stop and state.step < total:
        batches = source.epoch(state.epoch)
        while state.batch_in_epoch < len(batches) and state.step < total and not stop:
            tick = time.perf_counter()
            group = batches[state.batch_in_epoch:state.batch_in_epoch + cfg.grad_accum]
            lr = lr_at(state.step, base_lr=cfg.lr, total_steps=total, warmup=warmup, schedule=cfg.schedule)
            result = train_step([[train_features[i] for i in idx] for idx in group], lr)
            seconds = time.perf_counter() - tick
            state.step += 1
            state.batch_in_epoch += len(group)
            state.train_seconds += seconds
            state.examples += result.examples
            state.tokens += result.tokens
            state.flops += result.flops
            window.add(result, seconds)
            for logger in loggers:
                logger.advance(state.step)
            if state.step % log_every == 0 or state.step == total:
                record = window.record(state, epoch_position(), lr, peak)
                if threads is not None:
                    record["threads"] = threads.threads  # this window's; a change applies from the next step
                    if change := threads.recheck(state.step):
                        record["threads_change"] = change
                for logger in loggers:
                    logger.train(record)
                window = Window()
            stop = any([bool(callback(state)) for callback in callbacks])
            if dist.active and callbacks:  # one rank's callback stopping the run stops every rank
                stop = dist.sum([float(stop)])[0] > 0
            if not stop and stopping.due(state.step, total, epoch_ended=False):
                stop = evaluation()
        if state.batch_in_epoch >= len(batches):
            state.epoch += 1
            state.batch_in_epoch = 0
            if not stop and stopping.due(state.step, total, epoch_ended=True):
                stop = evaluation()
    for logger in loggers:
        logger.close()
    if not state.done:
        if not state.stopped_early:
            evaluation()
        state.done = True
        if state.train_seconds > PEAK_RECHECK_AFTER_S:  # a second chance at the peak: hosts slow down for seconds
            peak = max(peak, matmul_peak.__wrapped__(precision) * dist.world)
        state.peak_flops = peak
        if dist.is_main:
            checkpointer.save(asdict(state))  # a finished run keeps only its state: the best weights are in model/
    if used_rows is not None:
        used_rows.remove()
    return state
