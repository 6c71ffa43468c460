"""Where a training step's time goes: torch.profiler over stepwise's own step on real SST-2 batches.

Run: .venv/bin/python bench/profile_train.py [--precision bf16|fp32] [--steps 12] [--levers on|off]
Prints the top operators by self CPU time and the step's model FLOPs utilisation against the
measured matmul peak of the same precision. `--levers off` profiles training as before issue 17
(torch's dropout); `on` (the default) as `stepwise train` does now.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import SHARED, need
from torch.profiler import ProfilerActivity, profile

from stepwise.data.batching import collate, length_grouped_batches
from stepwise.data.readers import read_examples
from stepwise.model import TaskModel, load_tokenizer
from stepwise.precision import autocast
from stepwise.tasks import get_task
from stepwise.training.dropout import use_mask_dropout
from stepwise.training.flops import matmul_peak, non_embedding_params, train_flops
from stepwise.training.optim import build_optimizer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--levers", default="on", choices=["on", "off"])
    args = parser.parse_args()
    examples = read_examples(need(SHARED / "sst2" / "train.tsv"))[:2048]
    task = get_task("classify", ["0", "1"])
    tokenizer = load_tokenizer(None)
    model = TaskModel.from_encoder(None, 2, "mean")
    features = task.encode(tokenizer, examples, 256)
    batches = length_grouped_batches([len(f["input_ids"]) for f in features], 32, seed=0, epoch=0)
    if args.levers == "on":
        use_mask_dropout(model)
    optimizer = build_optimizer(model, "adamw", 5e-5, 0.01)
    model.train()  # dropout on, as in training (the model loads in eval mode; the 2026-11-27 profile had it off)
    n_params, cfg = non_embedding_params(model), model.encoder.config

    def step(idx: list[int]) -> float:
        feats = [features[i] for i in idx]
        batch = collate(feats, tokenizer.pad_token_id)
        with autocast(args.precision):
            loss = task.loss(model(**batch), batch, 0.0)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return train_flops(n_params, cfg.num_hidden_layers, cfg.hidden_size, [len(f["input_ids"]) for f in feats])

    for idx in batches[:3]:  # warm-up: oneDNN primitive creation
        step(idx)
    flops, start = 0.0, time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for idx in batches[3:3 + args.steps]:
            flops += step(idx)
    seconds = time.perf_counter() - start
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))
    peak = matmul_peak(args.precision)
    print(f"levers {args.levers}, precision {args.precision}: {flops / seconds / 1e9:.1f} model GFLOP/s "
          f"(under the profiler), "
          f"matmul peak {peak / 1e9:.1f} GFLOP/s, MFU {flops / seconds / peak:.1%}")


if __name__ == "__main__":
    main()
