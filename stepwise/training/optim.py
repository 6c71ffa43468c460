"""Optimizer construction: no weight decay on biases and LayerNorm weights (as BERT was trained)."""

from __future__ import annotations

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    norm_params = {id(p) for m in model.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters()}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if name.endswith("bias") or id(p) in norm_params else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def freeze_embeddings(model: nn.Module) -> None:
    """Keep the encoder's word-embedding matrix as pretrained (`--freeze-embeddings`).

    It is half of MiniLM's parameters and a batch uses a few hundred of its 30k rows, yet AdamW updates
    all of them every step: 10-20% of a CPU training step. Frozen, that time is saved at a measured cost
    of 0.3-0.5 pt on SST-2, so it is an option, not the default (docs/benchmarks.md, issue 17).
    """
    model.encoder.get_input_embeddings().weight.requires_grad_(False)


class LaggedEmbeddings:
    """AdamW whose word-embedding matrix steps every `every` steps, on the mean of the gradients since.

    Why: a batch touches a few hundred of the matrix's 30k rows, yet a dense AdamW streams all 11.7M values
    (and a fresh zero-filled gradient) every step — 6% of a CPU step. Here the matrix's gradient stays in
    `.grad` between its steps (backward adds the few used rows in place) and AdamW runs on it once per
    `every` steps. The other parameters step as usual. The matrix is left out of gradient clipping
    (`clip_parameters`): its gradient holds several steps. `param_groups` lists both optimizers' groups, so
    setting the learning rate works as for any optimizer; the state dict keeps the pending gradient, so a
    resumed run continues exactly.
    """

    def __init__(self, model: nn.Module, main: torch.optim.Optimizer, lagged: torch.optim.Optimizer,
                 every: int) -> None:
        self.main, self.lagged, self.every, self.count = main, lagged, every, 0
        self.matrix = model.encoder.get_input_embeddings().weight

    @property
    def param_groups(self) -> list[dict]:
        return self.main.param_groups + self.lagged.param_groups

    def clip_parameters(self) -> list[torch.Tensor]:
        return [p for group in self.main.param_groups for p in group["params"]]

    def step(self) -> None:
        self.main.step()
        self.count += 1
        if self.count % self.every == 0 and self.matrix.grad is not None:
            self.matrix.grad.div_(self.every)
            self.lagged.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.main.zero_grad(set_to_none=set_to_none)
        if self.count % self.every == 0:
            self.lagged.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        pending = self.matrix.grad
        return {"main": self.main.state_dict(), "lagged": self.lagged.state_dict(), "count": self.count,
                "pending": None if pending is None else pending.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.main.load_state_dict(state["main"])
        self.lagged.load_state_dict(state["lagged"])
        self.count = state["count"]
        self.matrix.grad = state["pending"]


def build_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float,
                    momentum: float = 0.9, embeddings_every: int = 1) -> torch.optim.Optimizer | LaggedEmbeddings:
    matrix = model.encoder.get_input_embeddings().weight
    if embeddings_every > 1 and matrix.requires_grad:
        if name != "adamw":
            raise ValueError("lagged embedding updates are for adamw")
        matrix.requires_grad_(False)  # out of the main optimizer's groups
        main = build_optimizer(model, name, lr, weight_decay, momentum)
        matrix.requires_grad_(True)
        lagged = torch.optim.AdamW([{"params": [matrix], "weight_decay": weight_decay}], lr=lr, betas=(0.9, 0.999),
                                   eps=1e-8, foreach=True)
        return LaggedEmbeddings(model, main, lagged, embeddings_every)
    groups = param_groups(model, weight_decay)
    if name == "adamw":
        # foreach: one fused kernel per tensor list instead of a Python loop over 100+ tensors.
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8, foreach=True)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, foreach=True)
    raise ValueError(f"unknown optimizer {name!r}")
