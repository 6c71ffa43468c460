"""Structured FFN pruning: score every intermediate neuron, keep the most important ones in each layer.

Importance is first-order Taylor: removing weight w changes the loss by about |w * dL/dw|, so a neuron
scores the sum of that over its weights (its row of intermediate.dense with the bias, its column of
output.dense), accumulated batch by batch over a few training batches. Unlike weight magnitude it sees
what the data does: a neuron whose weights are large but that never fires, or whose output the later
layers ignore, scores near zero. Measured on all-MiniLM-L6-v2 fine-tuned on the demo headlines (dev
accuracy 0.97, 72 examples, one seed), before any recovery: removing 50 / 75 / 90% of the neurons keeps
0.96 / 0.90 / 0.75 with Taylor importance, 0.82 / 0.71 / 0.47 with weight magnitude, 0.86 / 0.67 / 0.57
at random: magnitude is no better than chance. Every layer keeps the same number of neurons, so the
result is a standard config with a smaller `intermediate_size` (stepwise.deploy.surgery does the
cutting) that loads with from_pretrained and exports to ONNX, and that runs faster, unlike
torch.nn.utils.prune masks (75% removed: a 32x64-token batch in 318 instead of 598 ms on one thread).

Attention heads are not pruned. A BERT config has one `num_attention_heads` and transformers derives the
head size as hidden_size / num_attention_heads (BertSelfAttention, transformers 5), with query/key/value
of width heads * head size = hidden_size; transformers 5 also removed `prune_heads`. Removing heads while
keeping their size therefore has no config that loads it back: fewer heads would silently mean wider
ones with mismatched weights. Per-layer head counts would need a custom attention module, which
neither from_pretrained nor the exported ONNX graph of a standard encoder knows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from stepwise.deploy.surgery import ffn_modules, keep_ffn_neurons
from stepwise.precision import autocast

Loss = Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor]


def taylor_importance(model: nn.Module, encoder: nn.Module, batches: Iterable[dict[str, torch.Tensor]], loss: Loss,
                      precision: str = "fp32") -> list[torch.Tensor]:
    """Per layer, each FFN neuron's summed |w * dL/dw| over the batches (model in eval mode: no dropout noise).

    `loss(model, batch)` is the training loss of one batch; `encoder` is the part of `model` being pruned.
    """
    pairs = ffn_modules(encoder)
    scores = [torch.zeros(up.out_features) for up, _ in pairs]
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            model.zero_grad(set_to_none=True)
            with autocast(precision):
                value = loss(model, batch)
            value.backward()
            with torch.no_grad():
                for score, (up, down) in zip(scores, pairs):
                    score += (up.weight * up.weight.grad).abs().sum(1).float()
                    score += (up.bias * up.bias.grad).abs().float()
                    score += (down.weight * down.weight.grad).abs().sum(0).float()
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return scores


def most_important(scores: list[torch.Tensor], keep: int) -> list[torch.Tensor]:
    """Per layer, the indices of the `keep` highest-scoring neurons, in their original order."""
    return [torch.topk(score, keep).indices.sort().values for score in scores]


def prune_ffn(encoder: nn.Module, scores: list[torch.Tensor], keep: int) -> nn.Module:
    """A standard encoder keeping the `keep` most important FFN neurons of every layer."""
    return keep_ffn_neurons(encoder, most_important(scores, keep))
