"""Model FLOPs and the machine's measured matmul peak, for model FLOPs utilisation (MFU)."""

from __future__ import annotations

import time
from functools import lru_cache

import torch
from torch import nn


def non_embedding_params(model: nn.Module) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if "embeddings" not in n)


def train_flops(n_params: int, n_layers: int, hidden: int, lengths: list[int]) -> float:
    """Forward+backward FLOPs (3x forward) for real tokens: 6·N per token plus attention scores."""
    tokens = sum(lengths)
    attention = sum(4 * n_layers * hidden * t * t for t in lengths)
    return 6.0 * n_params * tokens + 3.0 * attention


@lru_cache(maxsize=4)
def matmul_peak(precision: str, size: int = 1024, rounds: int = 7, seconds: float = 0.6) -> float:
    """FLOP/s of a large square matmul in the training precision: the practical ceiling here.

    The best of `rounds` timed rounds sharing `seconds`: a busy neighbour or a frequency dip only ever
    slows a round down, so the fastest one is the machine's peak and moves least from run to run (one
    round of 8 matmuls moved 81–138 GFLOP/s on a shared host).
    """
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    generator = torch.Generator().manual_seed(0)  # never touch the global RNG: training must stay seeded
    a = torch.randn(size, size, generator=generator).to(dtype)
    b = torch.randn(size, size, generator=generator).to(dtype)
    out = torch.empty(size, size, dtype=dtype)
    torch.mm(a, b, out=out)  # warm-up: the BLAS picks its kernel and allocates its buffers
    start = time.perf_counter()
    torch.mm(a, b, out=out)
    per_matmul = max(time.perf_counter() - start, 1e-6)
    repeats = max(1, int(seconds / rounds / per_matmul))
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 * repeats / best
