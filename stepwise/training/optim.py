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
    of 0.3-0.5 pt on SST-2, so it is an option, not the default (bench/NOTES.md).
    """
    model.encoder.get_input_embeddings().weight.requires_grad_(False)


def build_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float,
                    momentum: float = 0.9, *, fused: bool = True) -> torch.optim.Optimizer:
    """`fused=False` keeps AdamW's `foreach` implementation (the benchmarks' before-and-after)."""
    groups = param_groups(model, weight_decay)
    if name == "adamw":
        # fused: one pass over each tensor's parameter, gradient and moments. On CPU `foreach` is a loop
        # of ~10 elementwise kernels per tensor; fused measured +5-7% per training step (issue 17).
        fused = fused and all(p.device.type in ("cpu", "cuda") for g in groups for p in g["params"])
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8,
                                 fused=fused or None, foreach=None if fused else True)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, foreach=True)
    raise ValueError(f"unknown optimizer {name!r}")
