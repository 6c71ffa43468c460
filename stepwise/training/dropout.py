"""Dropout with a cheaper mask on the CPU: same distribution, same RNG, about half the time.

torch's CPU dropout draws its mask with `bernoulli_`, which cost 8-9% of a MiniLM training step in the
profile (docs/benchmarks.md, issue 17); a uniform draw compared in place with p gives the same
Bernoulli(1-p) mask in less than half the time, forward and backward together. Only the module's
forward changes: no parameters or buffers, so saved weights, exports and evaluation are untouched.
"""

from __future__ import annotations

import torch
from torch import nn


class MaskDropout(nn.Dropout):
    """`nn.Dropout` whose training mask is `uniform >= p`, scaled by 1/(1-p) (inverted dropout)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.p == 1.0:
            return x * 0.0
        scale = 1.0 / (1.0 - self.p)
        # a float32 draw whatever x's dtype (a bf16 uniform is too coarse to hit p), made a 0/1 mask in place
        keep = torch.rand(x.shape, dtype=torch.float32, device=x.device).ge_(self.p)
        if x.dtype == torch.float32:
            return x * keep.mul_(scale)
        return x * keep.to(x.dtype) * scale  # the scale as a Python float: no rounding of 1/(1-p) to bf16


def use_mask_dropout(model: nn.Module) -> int:
    """Swap every plain `nn.Dropout` in `model` for a `MaskDropout` with the same p; returns how many."""
    swapped = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is nn.Dropout:
                replacement = MaskDropout(child.p, inplace=False)
                replacement.train(child.training)
                setattr(module, name, replacement)
                swapped += 1
    return swapped
