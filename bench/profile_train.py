"""Where a training step's time goes: torch.profiler over stepwise's own step on real SST-2 (or CoNLL) batches.

Run: .venv/bin/python bench/profile_train.py [--precision bf16|fp32] [--steps 12] [--levers on|off]
                                              [--task classify|tag]
Prints the top operators by self CPU time and the step's model FLOPs utilisation against the
measured matmul peak of the same precision. The step is `TrainStep` in train mode, built as
`levers.py` builds it: `--levers off` is training as before issue 17 (torch's dropout, every embedding
row through AdamW), `on` (the default) as `stepwise train` does now (MaskDropout, the used embedding rows
only). (The 2026-11-27 profile used a step of its own,
with the model left in eval mode: dropout off.)
"""

from __future__ import annotations

import argparse
import time

from levers import build, training_data, training_vocabulary
from torch.profiler import ProfilerActivity, profile

from stepwise.training.flops import matmul_peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--levers", default="on", choices=["on", "off"])
    parser.add_argument("--task", default="classify", choices=["classify", "tag"])
    args = parser.parse_args()
    task, tokenizer, cfg, features, batches = training_data(args.task, 2048)
    on = args.levers == "on"
    step = build("used_rows" if on else "off", task, features, tokenizer.pad_token_id, cfg, args.precision,
                 vocabulary=training_vocabulary(args.task, task, tokenizer) if on else None)

    def run(idx: list[int]) -> float:
        return step([[features[i] for i in idx]], 5e-5).flops

    for idx in batches[:3]:  # warm-up: oneDNN primitive creation
        run(idx)
    flops, start = 0.0, time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for idx in batches[3:3 + args.steps]:
            flops += run(idx)
    seconds = time.perf_counter() - start
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))
    peak = matmul_peak(args.precision)
    print(f"levers {args.levers}, precision {args.precision}: {flops / seconds / 1e9:.1f} model GFLOP/s "
          f"(under the profiler), matmul peak {peak / 1e9:.1f} GFLOP/s, MFU {flops / seconds / peak:.1%}")


if __name__ == "__main__":
    main()
