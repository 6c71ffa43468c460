"""Numeric precision on the CPU: bf16 autocast when it is measured to be faster here, else fp32.

CPU flags say whether bf16 *can* be fast (AVX-512 BF16 or AMX dot products); they do not say it *is*
on this host: virtualised CPUs, microcode and the oneDNN build decide that, and a wrong guess costs the
whole run. So `auto` times a few steps of the real model at the run's batch shape in both precisions
(warm-up excluded, the two interleaved so a load change hits both alike) and keeps the faster. bf16
must win by `BF16_MARGIN`: on a tie fp32 keeps exact numerics, and a choice inside the margin is by
construction within 5% of the faster. The answer is cached per (CPU, flags, torch, model shape,
threads, mode, batch shape) in the user's cache directory, so only a host's first run pays for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

#: bf16 is kept only when its step takes at most this share less time than fp32's
BF16_MARGIN = 0.05
PROBE_BUDGET_S = 0.5  # timed steps per probe, after the warm-ups (both precisions together)
MAX_ROUNDS = 3
#: the probe's batch is the run's, capped here: at 8 x 32 tokens a step is already made of the same
#: matmul shapes (tokens x hidden x hidden) as the run's, and the probe stays under 1.5 s even at 1 thread
MAX_PROBE_BATCH = 8


def native_bf16() -> bool:
    """bf16 dot products in hardware and kernels allowed to use them (not capped with ATEN_CPU_CAPABILITY)."""
    if not torch.backends.cpu.get_cpu_capability().startswith("AVX512"):
        return False
    has_bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    has_amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    return bool(has_bf16 or has_amx)


def resolve_precision(precision: str) -> str:
    """A precision without measuring: "auto" is fp32 where bf16 has no native dot products (it is always
    slower there), else bf16 (the flags' guess; `measure_precision` replaces it with a timing)."""
    if precision != "auto":
        return precision
    return "bf16" if native_bf16() else "fp32"


def autocast(precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision: matmuls in bf16, weights and optimizer state stay fp32."""
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def cache_dir() -> Path:
    """$STEPWISE_CACHE_DIR, else $XDG_CACHE_HOME/stepwise, else ~/.cache/stepwise."""
    if os.environ.get("STEPWISE_CACHE_DIR"):
        return Path(os.environ["STEPWISE_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "stepwise"


def _cpu() -> tuple[str, str]:
    """The CPU's model name and a digest of its flags (Linux; elsewhere what `platform` knows)."""
    info: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    name = info.get("model name") or platform.processor() or platform.machine()
    flags = " ".join(sorted(info.get("flags", "").split()))
    return name, hashlib.sha1(flags.encode()).hexdigest()[:12]


def _bucket(n: int) -> int:
    """The next power of two: shapes that time alike share a cache entry."""
    return 1 << max(0, int(n - 1).bit_length())


def model_fingerprint(model: torch.nn.Module) -> str:
    """What a step's speed depends on: the architecture and the parameter shapes, not the weights."""
    shapes = ";".join(f"{n}:{tuple(p.shape)}" for n, p in model.named_parameters())
    return hashlib.sha1(shapes.encode()).hexdigest()[:12]


def _inputs(model: torch.nn.Module, batch: int, length: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)  # never the global RNG: a run's seed stays its own
    vocab = model.encoder.config.vocab_size
    ids = torch.randint(min(1000, vocab - 1), vocab, (batch, length), generator=generator)
    names = getattr(model, "input_names", ("input_ids", "attention_mask"))
    inputs = {name: torch.zeros(batch, length, dtype=torch.long) for name in names}
    inputs["input_ids"], inputs["attention_mask"] = ids, torch.ones(batch, length, dtype=torch.long)
    return inputs


def _step_seconds(model: torch.nn.Module, inputs: dict[str, torch.Tensor], precision: str, train: bool) -> float:
    start = time.perf_counter()
    if train:
        with autocast(precision):
            out = model(**inputs)
        out.float().sum().backward()
    else:
        with torch.inference_mode(), autocast(precision):
            model(**inputs)
    return time.perf_counter() - start


def time_precisions(model: torch.nn.Module, batch: int, length: int, *, train: bool) -> dict[str, float]:
    """Seconds per step (the fastest round) in fp32 and bf16, interleaved, one warm-up each excluded.

    The model's gradients, mode and the global RNG are as they were afterwards.
    """
    was_training = model.training
    saved_grads = {p: p.grad for p in model.parameters()}
    inputs = _inputs(model, batch, length)
    best = {"fp32": float("inf"), "bf16": float("inf")}
    try:
        with torch.random.fork_rng():
            model.train(train)
            for precision in best:  # warm-up: kernels picked, buffers allocated
                _step_seconds(model, inputs, precision, train)
            spent, rounds = 0.0, 0
            while rounds < 2 or (spent < PROBE_BUDGET_S and rounds < MAX_ROUNDS):
                for precision in best:
                    seconds = _step_seconds(model, inputs, precision, train)
                    best[precision] = min(best[precision], seconds)
                    spent += seconds
                rounds += 1
    finally:
        model.train(was_training)
        for p, grad in saved_grads.items():
            p.grad = grad
    return best


def measure_precision(precision: str, model: torch.nn.Module, *, batch: int, length: int,
                      train: bool) -> tuple[str, dict[str, Any]]:
    """The precision to run in and how it was chosen: (choice, record for results.json).

    `precision` other than "auto" is kept as given; "auto" without native bf16 is fp32 without timing.
    """
    if precision != "auto":
        return precision, {"choice": precision, "reason": "--precision"}
    if not native_bf16():
        return "fp32", {"choice": "fp32", "reason": "no native bf16 dot products on this CPU"}
    batch, length = min(_bucket(batch), MAX_PROBE_BATCH), min(_bucket(length), 128)
    cpu, flags = _cpu()
    key = "|".join([cpu, flags, torch.__version__, model_fingerprint(model), str(torch.get_num_threads()),
                    "train" if train else "infer", f"{batch}x{length}"])
    path = cache_dir() / "precision.json"
    cache = _read_cache(path)
    if key in cache:
        return cache[key]["choice"], {**cache[key], "cached": True}
    tick = time.perf_counter()
    times = time_precisions(model, batch, length, train=train)
    choice = "bf16" if times["bf16"] <= (1 - BF16_MARGIN) * times["fp32"] else "fp32"
    record = {"choice": choice, "reason": "measured", "fp32_ms": round(times["fp32"] * 1000, 2),
              "bf16_ms": round(times["bf16"] * 1000, 2), "shape": [batch, length],
              "threads": torch.get_num_threads(), "probe_seconds": round(time.perf_counter() - tick, 2)}
    cache[key] = record
    with contextlib.suppress(OSError):  # a read-only home costs the next run a probe, nothing more
        from stepwise.files import atomic_write_json

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, cache)
    return choice, {**record, "cached": False}


def _read_cache(path: Path) -> dict[str, Any]:
    """The cache, or nothing when it is missing or damaged (it is only ever a shortcut)."""
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(cache, dict):
        return {}
    return {k: v for k, v in cache.items() if isinstance(v, dict) and v.get("choice") in ("fp32", "bf16")}
