"""How stable is the matmul peak that MFU divides by? The old probe against the current one, repeated.

Run: cd bench && ../.venv/bin/python peak_probe.py [--repeats 12] [--precision fp32]
The old probe timed one round of 8 1024x1024 matmuls; the current one (`flops.matmul_peak`) keeps the
best of 7 rounds sharing 0.6 s. Both are called alternately in this one process, so they see the same
machine; the spread (max/min) says how far MFU can move between two runs for the probe's sake alone.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import emit

from stepwise.training.flops import matmul_peak


def old_probe(precision: str, size: int = 1024, repeats: int = 8) -> float:
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(dtype)
    b = torch.randn(size, size, generator=generator).to(dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2.0 * size**3 * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=12)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    args = parser.parse_args()
    probes = {"old: one round of 8 matmuls": old_probe, "current: best of 7 rounds in 0.6 s": matmul_peak.__wrapped__}
    seen: dict[str, list[float]] = {name: [] for name in probes}
    for _ in range(args.repeats):
        for name, probe in probes.items():
            seen[name].append(probe(args.precision) / 1e9)
    rows = [{"probe": name, "min_gflops": round(min(v), 1), "median_gflops": round(statistics.median(v), 1),
             "max_gflops": round(max(v), 1), "max_over_min": round(max(v) / min(v), 3),
             "stdev_over_median": round(statistics.stdev(v) / statistics.median(v), 3)} for name, v in seen.items()]
    emit("peak_probe", rows, ["probe", "min_gflops", "median_gflops", "max_gflops", "max_over_min",
                              "stdev_over_median"], {"repeats": args.repeats, "precision": args.precision,
                                                     "cpu_capability": torch.backends.cpu.get_cpu_capability()})


if __name__ == "__main__":
    main()
