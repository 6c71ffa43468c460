"""Cutting a trained BERT-style encoder into a smaller standard one: fewer layers, fewer FFN neurons.

The result is a fresh encoder of the same class, built from the config with `num_hidden_layers` or
`intermediate_size` changed and loaded strictly with the kept weights. So it is exactly what
`from_pretrained` rebuilds from its saved files, and what ONNX export traces: no masks, no custom
modules. Which layers or neurons to keep is decided elsewhere (the distill and prune recipes).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from stepwise.errors import StepwiseError
from stepwise.model import quiet_transformers

NOT_BERT = "pass a run trained from a BERT-style encoder (encoder.layer[i].intermediate / .output)"


def spread_layers(keep: int, total: int) -> list[int]:
    """`keep` of `total` layer indices, evenly spread and always including the top layer: 3 of 6 → 1, 3, 5.

    Each kept layer stands for the block of total/keep consecutive layers it ends, and the top layer is
    the one whose output the head was trained on, so the head's input changes least (DistilBERT's
    every-other-layer choice, shifted up by one).
    """
    if not 1 <= keep <= total:
        raise ValueError(f"cannot keep {keep} of {total} layers")
    return [-(-(i + 1) * total // keep) - 1 for i in range(keep)]


def layer_list(encoder: nn.Module) -> tuple[str, nn.ModuleList]:
    """The encoder's stack of transformer layers and its name in the state dict (BERT: "encoder.layer")."""
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) != getattr(encoder.config, "num_hidden_layers", -1):
        raise StepwiseError(f"the {type(encoder).__name__} encoder has no BERT-style layer stack", fix=NOT_BERT)
    return "encoder.layer", layers


def keep_layers(encoder: nn.Module, keep: Sequence[int]) -> nn.Module:
    """A copy of `encoder` with only the layers `keep` (in that order); embeddings are shared weights, copied."""
    prefix, layers = layer_list(encoder)
    new_index = {old: new for new, old in enumerate(keep)}
    pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.(.*)$")
    state = {}
    for key, value in encoder.state_dict().items():
        match = pattern.match(key)
        if match is None:
            state[key] = value
        elif int(match[1]) in new_index:
            state[f"{prefix}.{new_index[int(match[1])]}.{match[2]}"] = value
    return rebuilt(encoder, state, num_hidden_layers=len(keep))


def ffn_modules(encoder: nn.Module) -> list[tuple[nn.Linear, nn.Linear]]:
    """Per layer, the FFN's two linear maps: hidden → intermediate (rows = neurons) and back (columns)."""
    _, layers = layer_list(encoder)
    pairs = []
    for layer in layers:
        up = getattr(getattr(layer, "intermediate", None), "dense", None)
        down = getattr(getattr(layer, "output", None), "dense", None)
        if not (isinstance(up, nn.Linear) and isinstance(down, nn.Linear) and up.out_features == down.in_features):
            raise StepwiseError(f"the {type(encoder).__name__} encoder has no BERT-style FFN", fix=NOT_BERT)
        pairs.append((up, down))
    return pairs


def keep_ffn_neurons(encoder: nn.Module, keep: Sequence[torch.Tensor]) -> nn.Module:
    """A copy of `encoder` keeping, in layer i, the intermediate neurons `keep[i]` (the same count in every layer).

    Neuron j of a layer is row j of intermediate.dense (weight and bias) and column j of output.dense;
    dropping it removes exactly its contribution, since the FFN is down(act(up(x))) with act elementwise.
    """
    sizes = {len(k) for k in keep}
    if len(sizes) != 1:
        raise ValueError(f"keep the same number of neurons in every layer (got {sorted(sizes)})")
    prefix, _ = layer_list(encoder)
    pairs = ffn_modules(encoder)
    if len(keep) != len(pairs):
        raise ValueError(f"{len(keep)} neuron lists for {len(pairs)} layers")
    state = dict(encoder.state_dict())
    for i, idx in enumerate(keep):
        idx = torch.as_tensor(idx, dtype=torch.long).sort().values  # keep the original order of the neurons
        base = f"{prefix}.{i}"
        state[f"{base}.intermediate.dense.weight"] = state[f"{base}.intermediate.dense.weight"][idx]
        state[f"{base}.intermediate.dense.bias"] = state[f"{base}.intermediate.dense.bias"][idx]
        state[f"{base}.output.dense.weight"] = state[f"{base}.output.dense.weight"][:, idx]
    return rebuilt(encoder, state, intermediate_size=sizes.pop())


def rebuilt(encoder: nn.Module, state: dict[str, torch.Tensor], **changes: Any) -> nn.Module:
    """An encoder of the same class from its config with `changes`, loaded strictly (no key left over or missing)."""
    config = copy.deepcopy(encoder.config)
    for name, value in changes.items():
        setattr(config, name, value)
    with quiet_transformers(), torch.random.fork_rng(devices=[]):  # the random init is overwritten: use no randomness
        # stepwise loads every encoder with add_pooling_layer=False (model.py), so every class it holds takes it
        new = type(encoder)(config, add_pooling_layer=False)
    new.load_state_dict({k: v.detach().clone() for k, v in state.items()}, strict=True)
    return new.train(encoder.training)
