"""Each training-speed lever of issue 17 alone, on the same batches, interleaved in one process.

Run: cd bench && ../.venv/bin/python levers.py [--task classify|tag] [--steps 40] [--levers off,freeze,...]
Every lever gets its own copy of the model (same seed) and its own optimizer; each batch is stepped by
every lever in turn (the order alternating), so a noisy neighbour slows them all alike. Reports each
lever's speed against `off` (training as before issue 17): the ratio of summed step times and the median
of per-batch ratios, plus the one-time warm-up (compilation, for `compile`).

Levers: off (training as before issue 17), uniform (session 7's MaskDropout: a float uniform draw per entry,
SDPA's own attention dropout), dropout (MaskDropout now: 16-bit masks, the attention probabilities too), and on
top of it: used_rows (only the embedding rows the whole training file uses train, the rest decays as one
factor: with dropout, what `stepwise train` does now), used_rows_uniform (the same with the uniform mask: what
`stepwise train` did in session 10), frozen (the word-embedding matrix, `--freeze-embeddings`), frozen_layer
(the whole embedding layer: no gradient below layer 1), compile (torch.compile(dynamic=True) of the model),
used_rows_foreach (used_rows with `foreach` AdamW: what `stepwise train` did in session 11). Since session 12
AdamW is `fused=True` (build_optimizer); `off`, `uniform`, `used_rows_uniform` and `used_rows_foreach` keep
the `foreach` AdamW they had. fp32 throughout.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import SHARED, emit, need
from torch import nn

from stepwise.config import TrainConfig
from stepwise.data.batching import length_grouped_batches
from stepwise.data.readers import read_examples
from stepwise.model import TaskModel, load_tokenizer
from stepwise.tasks import get_task
from stepwise.training.dropout import use_mask_dropout
from stepwise.training.flops import matmul_peak
from stepwise.training.objectives import ObjectiveContext, build_objective
from stepwise.training.optim import build_optimizer, freeze_embeddings
from stepwise.training.step import TrainStep
from stepwise.training.used_rows import UsedRows

LEVERS = ("off", "uniform", "dropout", "used_rows", "used_rows_uniform", "used_rows_foreach", "frozen", "frozen_layer",
          "compile")
FOREACH = ("off", "uniform", "used_rows_uniform", "used_rows_foreach")  # levers from before AdamW was fused


class UniformDropout(nn.Dropout):
    """Session 7's MaskDropout, the baseline of `uniform`: one float32 uniform draw per entry, compared with p."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return x * torch.rand(x.shape, dtype=torch.float32).ge_(self.p).mul_(1.0 / (1.0 - self.p))


def use_uniform_dropout(model: nn.Module) -> None:
    """Every dropout a `UniformDropout`, and the encoder's attention back to SDPA with its own dropout."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Dropout):
                setattr(module, name, UniformDropout(child.p))
    model.encoder.set_attn_implementation("sdpa")


def training_data(task_name: str, n: int = 4096):
    """The first `n` training examples of SST-2 or CoNLL as stepwise encodes them, in length-grouped batches of
    32 (epoch 0, seed 0), with the task, tokenizer and a config at its defaults (no word shape)."""
    tokenizer = load_tokenizer(None)
    if task_name == "classify":
        examples = read_examples(need(SHARED / "sst2" / "train.tsv"))[:n]
        labels = ["0", "1"]
    else:
        examples = read_examples(need(SHARED / "conll2003" / "train.txt"), fmt="conll")[:n]
        labels = sorted({t for e in examples for t in e.label})
    task = get_task(task_name, labels)
    features = task.encode(tokenizer, examples, 256)
    batches = length_grouped_batches([len(f["input_ids"]) for f in features], 32, seed=0, epoch=0)
    return task, tokenizer, TrainConfig(train="-", out="-", task=task_name, casing=False), features, batches


def training_vocabulary(task_name: str, task, tokenizer) -> set[int]:
    """The token ids of the whole training file: the rows a full run trains with `used_rows`."""
    path = SHARED / "sst2" / "train.tsv" if task_name == "classify" else SHARED / "conll2003" / "train.txt"
    examples = read_examples(need(path), fmt=None if task_name == "classify" else "conll")
    return {i for f in task.encode(tokenizer, examples, 256, with_labels=False) for i in f["input_ids"]}


def build(lever: str, task, features, pad_id: int, cfg: TrainConfig, precision: str = "fp32",
          vocabulary: set[int] | None = None) -> TrainStep:
    """stepwise's own training step (`TrainStep`, in train mode) on a fresh model with `lever` applied."""
    torch.manual_seed(0)
    model = TaskModel.from_encoder(None, len(task.labels), task.pooling)
    if lever != "off":  # every lever on top of the default one (MaskDropout)
        use_mask_dropout(model)
    if lever.endswith("uniform"):
        use_uniform_dropout(model)
    if lever == "frozen":
        freeze_embeddings(model)
    if lever == "frozen_layer":  # the whole embedding layer: no gradient below layer 1 either
        model.encoder.embeddings.requires_grad_(False)
    used_rows = UsedRows(model, [sorted(vocabulary or ())], pad_id) if lever.startswith("used_rows") else None
    optimizer = build_optimizer(model, "adamw", 5e-5, 0.01, fused=lever not in FOREACH)
    if used_rows is not None:
        used_rows.track(optimizer)
    objective = build_objective("supervised", ObjectiveContext(task, model, cfg, precision, features))
    step = TrainStep(model, optimizer, objective, task, pad_id=pad_id, clip=1.0)
    if lever == "compile":
        step.attach(torch.compile(model, dynamic=True))
    model.train()
    return step


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", default="classify", choices=["classify", "tag"])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--levers", default="off,dropout,used_rows,frozen")
    args = parser.parse_args()
    levers = args.levers.split(",")
    unknown = set(levers) - set(LEVERS)
    if unknown or levers[0] != "off":
        parser.error(f"--levers: the first must be 'off', the others from {', '.join(LEVERS)}")
    task, tokenizer, cfg, features, batches = training_data(args.task)
    vocabulary = (training_vocabulary(args.task, task, tokenizer)
                  if any(lever.startswith("used_rows") for lever in levers) else None)
    steps = {lever: build(lever, task, features, tokenizer.pad_token_id, cfg, vocabulary=vocabulary)
             for lever in levers}
    warm, times, flops = {}, {lever: [] for lever in levers}, {lever: 0.0 for lever in levers}
    for lever in levers:
        start = time.perf_counter()
        for idx in batches[:3]:
            steps[lever]([[features[i] for i in idx]], 5e-5)
        warm[lever] = time.perf_counter() - start
    for k, idx in enumerate(batches[3:3 + args.steps]):
        for lever in levers if k % 2 == 0 else levers[::-1]:
            start = time.perf_counter()
            result = steps[lever]([[features[i] for i in idx]], 5e-5)
            times[lever].append(time.perf_counter() - start)
            flops[lever] += result.flops
    peak = matmul_peak("fp32")
    rows = []
    for lever in levers:
        ratios = [b / t for b, t in zip(times["off"], times[lever])]
        rows.append({"lever": lever, "seconds": round(sum(times[lever]), 2),
                     "speed_vs_off": round(sum(times["off"]) / sum(times[lever]), 3),
                     "median_batch_speed_vs_off": round(statistics.median(ratios), 3),
                     "warmup_s": round(warm[lever], 1),
                     "mfu": round(flops[lever] / sum(times[lever]) / peak, 3)})
    emit(f"levers_{args.task}", rows, ["lever", "seconds", "speed_vs_off", "median_batch_speed_vs_off", "warmup_s",
                                        "mfu"], {"steps": args.steps, "peak_gflops_per_s": round(peak / 1e9, 1),
                                                 "cpu_capability": torch.backends.cpu.get_cpu_capability()})


if __name__ == "__main__":
    main()
