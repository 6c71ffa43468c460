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
    """Keep the encoder's embedding layer (word, position and segment embeddings, their LayerNorm) as pretrained.

    The word matrix is half of MiniLM's parameters and a batch touches a few hundred of its 30k rows, yet
    AdamW updates all of it every step; with the whole layer fixed, backward also stops at the first
    transformer layer (no input gradient there). Extra inputs added to the embeddings (word shape, a
    previous prediction) still train, and their gradient still flows down to them.
    """
    encoder = model.encoder
    layer = getattr(encoder, "embeddings", None)
    (layer if isinstance(layer, nn.Module) else encoder.get_input_embeddings()).requires_grad_(False)


def build_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float,
                    momentum: float = 0.9) -> torch.optim.Optimizer:
    groups = param_groups(model, weight_decay)
    if name == "adamw":
        # foreach: one fused kernel per tensor list instead of a Python loop over 100+ tensors.
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8, foreach=True)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, foreach=True)
    raise ValueError(f"unknown optimizer {name!r}")
