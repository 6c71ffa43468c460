"""One optimizer step: micro-batches → objective → backward (accumulated) → clip → optimizer step."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from stepwise.data.batching import Feature, collate
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

    `refiner`, when given, turns features into refiner inputs (the previous prediction) first.
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, objective: Objective, task: Any, *,
                 pad_id: int, clip: float | None, refiner: Any | None = None) -> None:
        self.model, self.optimizer, self.objective, self.task = model, optimizer, objective, task
        self.pad_id, self.clip, self.refiner = pad_id, clip, refiner
        config = model.encoder.config
        self.flop_shape = (non_embedding_params(model), config.num_hidden_layers, config.hidden_size)

    def __call__(self, micro_batches: list[list[Feature]], lr: float) -> StepResult:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        out = StepResult()
        for feats in micro_batches:
            if self.refiner is not None:
                feats = self.refiner.inputs(self.model, feats)
            loss, logs = self.objective(self.model, collate(feats, self.pad_id))
            (loss / len(micro_batches)).backward()
            out.loss += loss.item() / len(micro_batches)
            for key, value in logs.items():
                out.logs[key] = out.logs.get(key, 0.0) + value / len(micro_batches)
            lengths = [len(f["input_ids"]) for f in feats]
            out.examples += self.task.units(feats)
            out.tokens += sum(lengths)
            out.flops += train_flops(*self.flop_shape, lengths)
        if self.clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return out
