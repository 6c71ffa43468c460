"""Numeric precision on the CPU: bf16 autocast where the hardware has native bf16 dot products."""

from __future__ import annotations

import contextlib

import torch


def resolve_precision(precision: str) -> str:
    """"auto" picks bf16 where the CPU has native bf16 dot products (AVX-512 BF16 / AMX), else fp32.

    A process whose kernels are capped below AVX-512 (`ATEN_CPU_CAPABILITY=avx2`, as on an AVX2-only
    machine or when emulating one) trains in fp32 too: bf16 without the instructions is slower than fp32.
    """
    if precision != "auto":
        return precision
    if not torch.backends.cpu.get_cpu_capability().startswith("AVX512"):
        return "fp32"
    has_bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    has_amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    return "bf16" if (has_bf16 or has_amx) else "fp32"


def autocast(precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision: matmuls in bf16, weights and optimizer state stay fp32."""
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()
