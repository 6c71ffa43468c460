"""Dropout with a cheaper mask on the CPU: the same Bernoulli(1-p) mask and inverted scaling, in half the time.

torch's CPU dropout draws its mask with `bernoulli_` (one serial 32-bit draw and a float compare per entry),
8-9% of a MiniLM training step in the profile (bench/NOTES.md). Here four entries share one
64-bit draw: each entry's 16 random bits are compared with p rounded to 1/65536 (0.1 becomes 0.100006), and
the kept entries are scaled by the exact keep probability, so the expectation is unchanged. The same mask
replaces SDPA's own dropout of the attention probabilities (`sdpa_mask_dropout`), which goes through
`bernoulli_` and torch's slower math path. Only forwards change: no parameters or buffers, so saved weights,
exports and evaluation are untouched.
"""

from __future__ import annotations

import math

import torch
from torch import nn

ATTENTION = "sdpa_mask_dropout"  # the attention implementation `use_mask_dropout` gives SDPA encoders


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str = "cpu"
              ) -> tuple[torch.Tensor, float]:
    """A boolean mask keeping each entry with probability 1 - p (p rounded to 1/65536), and that probability."""
    numel = math.prod(shape)
    # from=-2**63, to=None: all 64 bits random (the default range leaves the top bit 0)
    words = torch.empty((numel + 3) // 4, dtype=torch.int64, device=device).random_(-2 ** 63, None)
    dropped = round(p * 65536)
    keep = words.view(torch.int16)[:numel].view(shape) >= dropped - 32768
    return keep, (65536 - dropped) / 65536


def apply_mask(x: torch.Tensor, p: float) -> torch.Tensor:
    """Inverted dropout of `x` at rate `p` with a `keep_mask`."""
    keep, kept = keep_mask(x.shape, p, x.device)
    if x.dtype == torch.float32:
        return x * keep.to(torch.float32).mul_(1.0 / kept)
    return x * keep.to(x.dtype) * (1.0 / kept)  # the scale as a Python float: no rounding of it to bf16


class MaskDropout(nn.Dropout):
    """`nn.Dropout` whose training mask comes from `keep_mask`, scaled by the keep probability (inverted dropout)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.p == 1.0:
            return x * 0.0
        return apply_mask(x, self.p)


def sdpa_mask_dropout(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                      **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' SDPA attention, except that in training the attention probabilities are dropped with a
    `keep_mask` (softmax(q k^T * scale + mask), dropped, times v: what SDPA computes, without `bernoulli_`)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    plain = (getattr(module, "num_key_value_groups", 1) == 1 and not getattr(module, "is_causal", False)
             and kwargs.get("position_bias") is None and kwargs.get("softcap") is None)
    if dropout == 0.0 or not plain:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    scores = torch.matmul(query, key.transpose(-1, -2)) * (query.size(-1) ** -0.5 if scaling is None else scaling)
    if attention_mask is not None:  # SDPA's masks: True where attending, or additive
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    probs = apply_mask(torch.softmax(scores, dim=-1), dropout)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), None


def _register_attention() -> None:
    """Make `ATTENTION` a valid transformers attention implementation (masks built as SDPA's); idempotent."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface

    if ATTENTION not in ALL_ATTENTION_FUNCTIONS:
        AttentionInterface.register(ATTENTION, sdpa_mask_dropout)
    if ATTENTION not in ALL_MASK_ATTENTION_FUNCTIONS:
        AttentionMaskInterface.register(ATTENTION, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])


def use_mask_dropout(model: nn.Module) -> int:
    """Swap every plain `nn.Dropout` in `model` for a `MaskDropout` with the same p, and the SDPA attention of
    its transformers encoders for `sdpa_mask_dropout`; returns how many dropouts were swapped."""
    from transformers import PreTrainedModel

    swapped = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is nn.Dropout:
                replacement = MaskDropout(child.p, inplace=False)
                replacement.train(child.training)
                setattr(module, name, replacement)
                swapped += 1
    for module in model.modules():
        if isinstance(module, PreTrainedModel) and module.config._attn_implementation == "sdpa":
            _register_attention()
            module.set_attn_implementation(ATTENTION)
    return swapped
