"""One optimizer step: micro-batches → objective → backward (accumulated) → clip → optimizer step."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import torch

from stepwise.data.batching import collate
from stepwise.example import Feature
from stepwise.training.distributed import Dist
from stepwise.training.flops import non_embedding_params, train_flops
from stepwise.training.objectives import Objective


@dataclass
class StepResult:
    loss: float = 0.0
    logs: dict[str, float] = field(default_factory=dict)
    examples: int = 0
    tokens: int = 0
    flops: float = 0.0


class TrainStep:
    """Averages the loss over the step's micro-batches (gradient accumulation), clips, steps.

    `refiner`, when given, turns features into refiner inputs (the previous prediction) first. Under
    torchrun the forward and backward go through the DDP wrapper (`attach`): gradients are averaged over
    the ranks once per step, not per micro-batch, and the step's numbers are summed over the ranks.
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, objective: Objective, task: Any, *,
                 pad_id: int, clip: float | None, refiner: Any | None = None, dist: Dist | None = None) -> None:
        self.model, self.optimizer, self.objective, self.task = model, optimizer, objective, task
        self.pad_id, self.clip, self.refiner = pad_id, clip, refiner
        self.dist = dist or Dist()
        self.trained = model  # what the forward runs through: the model, or DDP around it
        config = model.encoder.config
        self.flop_shape = (non_embedding_params(model), config.num_hidden_layers, config.hidden_size)

    def attach(self, trained: torch.nn.Module) -> None:
        self.trained = trained

    def __call__(self, micro_batches: list[list[Feature]], lr: float) -> StepResult:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        out = StepResult()
        for k, feats in enumerate(micro_batches):
            if self.refiner is not None:
                feats = self.refiner.inputs(self.model, feats)
            last = k == len(micro_batches) - 1
            syncing = self.trained is self.model or last  # DDP: gradients meet across ranks on the last one only
            with contextlib.nullcontext() if syncing else self.trained.no_sync():
                loss, logs = self.objective(self.trained, collate(feats, self.pad_id))
                (loss / len(micro_batches)).backward()
            out.loss += loss.item() / len(micro_batches)
            for key, value in logs.items():
                out.logs[key] = out.logs.get(key, 0.0) + value / len(micro_batches)
            # a feature may say which sequences it runs (`_tokens`: a bi-encoder's query and passage)
            lengths = [n for f in feats for n in f.get("_tokens", (len(f["input_ids"]),))]
            out.examples += self.task.units(feats)
            out.tokens += sum(lengths)
            out.flops += train_flops(*self.flop_shape, lengths)
        if self.clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.dist.active:
            totals = self.dist.sum([out.loss, out.examples, out.tokens, out.flops, *out.logs.values()])
            out.loss = totals[0] / self.dist.world
            out.examples, out.tokens, out.flops = int(totals[1]), int(totals[2]), totals[3]
            out.logs = {key: value / self.dist.world for key, value in zip(out.logs, totals[4:])}
        return out
