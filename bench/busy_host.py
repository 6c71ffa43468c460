"""Training on a busy host: HF Trainer vs stepwise with 0, 1 and 2 other processes each spinning on a core.

Run: make bench-busy   (or .venv/bin/python bench/busy_host.py [--data sst2,demo] [--busy 0,1,2])

Per condition the bench starts its own background processes (`python -c "while True: pass"`, normal
priority), trains every row, and stops them. Rows:
  * HF Trainer at its defaults (all cores), SST-2 only, at the reference settings (bs 32, lr 5e-5, wd 0.01,
    10% warmup, 1 epoch, seed 0);
  * stepwise "before": what the default was before thread/precision measurement: every core, bf16 from
    the CPU flags;
  * stepwise --threads 1 and --threads 2 (a user setting threads by hand; the best of them is the bar);
  * stepwise default: threads counted from the free cores (re-counted every log step), precision timed;
  * `--busy 1@0.5`: one process busy half of every 100 ms (where a partly used core starts to cost 2 threads);
  * quiet host only: stepwise default threads with --precision fp32 and bf16 (is `auto` the faster?).
SST-2 rows train on a seeded 2,000-sentence slice of train, score the full dev and test sets; demo rows
run `stepwise demo`'s job on the embedded headlines. The precision cache starts empty, so the first
default row pays for the probe (reported). All in one process, on the same data.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import time

from classify import hf_trainer
from common import HF_SETTINGS, OUT, SHARED, cpu_flags, emit, need, timed_train
from search import tsv_slice

SPIN = """
import time
duty = {duty}
while True:
    end = time.perf_counter() + 0.1 * duty
    while time.perf_counter() < end:
        pass
    if duty < 1:
        time.sleep(0.1 * (1 - duty))
"""


@contextlib.contextmanager
def busy(n: int, duty: float = 1.0):
    """n processes each spinning on a core at normal priority (`duty` of every 100 ms), during the block."""
    procs = [subprocess.Popen([sys.executable, "-c", SPIN.format(duty=duty)]) for _ in range(n)]
    time.sleep(1.0 if n else 0.0)
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def stepwise_row(system: str, data: str, busy_n: int | str, files: dict, options: dict) -> dict:
    name = f"busy_{data}_{busy_n}_{system}".replace(" ", "_").replace("-", "").replace("=", "")
    run, wall = timed_train("classify", name, files["train"], files["dev"], files["test"], **options)
    r = run.results
    t = r["train"]
    threads = t["threads"]
    used = "→".join(str(c["threads"]) for c in threads["changes"])
    probe = t["precision_choice"]
    return {"data": data, "busy": busy_n, "system": system, "examples_per_s": t["examples_per_s"],
            "train_seconds": t["seconds"], "wall_seconds": wall, "test_accuracy": round(r["test"]["accuracy"], 4),
            "threads": used, "precision": t["precision"],
            "probe_s": probe.get("probe_seconds", 0.0) if not probe.get("cached") else 0.0,
            "mfu": t["mfu"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="sst2,demo")
    parser.add_argument("--busy", default="0,1,2", help="background busy processes per condition; N@D: N "
                        "processes each busy a share D of the time (e.g. 1@0.5)")
    parser.add_argument("--n", type=int, default=2000, help="SST-2 training sentences")
    parser.add_argument("--skip-hf", action="store_true")
    args = parser.parse_args()

    import torch

    from stepwise.data.readers import read_examples
    from stepwise.data.split import stratified_split
    from stepwise.demo import demo_data_path
    from stepwise.precision import resolve_precision

    cache = OUT / "busy_cache"
    shutil.rmtree(cache, ignore_errors=True)
    os.environ["STEPWISE_CACHE_DIR"] = str(cache)  # the first default row probes precision, later ones reuse it
    cores = len(os.sched_getaffinity(0))
    before = {"threads": cores, "precision": resolve_precision("auto")}  # every core, bf16 by the flags
    jobs = {}
    if "sst2" in args.data:
        src = need(SHARED / "sst2")
        (OUT / "busy_data").mkdir(parents=True, exist_ok=True)
        files = {"train": tsv_slice(src / "train.tsv", OUT / "busy_data" / "train.tsv", args.n, 0),
                 "dev": src / "dev.tsv", "test": src / "test.tsv"}
        same = {**HF_SETTINGS, "epochs": 1, "schedule": "linear", "clip": 1.0, "max_length": 256, "patience": None}
        jobs["sst2-2k"] = (files, same)
    if "demo" in args.data:
        split = OUT / "busy_demo"
        split.mkdir(parents=True, exist_ok=True)
        parts = stratified_split(read_examples(demo_data_path()), seed=0)  # the demo's own 7:2:1 split
        for part, examples in zip(("train", "dev", "test"), parts):
            (split / f"{part}.tsv").write_text("".join(f"{e.text}\t{e.label}\n" for e in examples))
        files = {p: split / f"{p}.tsv" for p in ("train", "dev", "test")}
        jobs["demo"] = (files, {"epochs": 4, "lr": 1e-4, "batch_size": 16})

    rows = []
    for cond in args.busy.split(","):
        count, _, duty = cond.partition("@")
        n = int(count) if not duty else f"{count}@{duty}"
        with busy(int(count), float(duty or 1)):
            for data, (files, options) in jobs.items():
                if data.startswith("sst2") and not args.skip_hf:
                    torch.set_num_threads(cores)  # HF at its default: every core
                    hf = hf_trainer(files["train"], files["test"], 1.0)
                    rows.append({"data": data, "busy": n, "system": "HF Trainer", "threads": str(cores),
                                 "examples_per_s": hf["train_examples_per_s"], "train_seconds": hf["train_seconds"],
                                 "wall_seconds": hf["wall_seconds"], "test_accuracy": hf["test_accuracy"],
                                 "precision": "fp32"})
                    print(rows[-1], flush=True)
                variants = [("before (all cores, flags)", before), ("--threads 1", {"threads": 1}),
                            ("--threads 2", {"threads": 2}), ("default (measured)", {})]
                if n == 0:
                    variants += [("measured threads, fp32", {"precision": "fp32"}),
                                 ("measured threads, bf16", {"precision": "bf16"})]
                for system, change in variants:
                    rows.append(stepwise_row(system, data, n, files, {**options, **change}))
                    print(rows[-1], flush=True)

    extra = {"cpu_flags": cpu_flags(), "cores": cores, "summary": summarise(rows)}
    emit("busy_host", rows, ["data", "busy", "system", "threads", "precision", "examples_per_s", "train_seconds",
                             "test_accuracy", "probe_s", "mfu"], extra)
    for line in extra["summary"]:
        print(line)


def summarise(rows: list[dict]) -> list[str]:
    """The acceptance ratios, one line each."""
    lines = []
    pick = {(r["data"], r["busy"], r["system"]): r for r in rows}
    for (data, n, system), r in pick.items():
        if system != "default (measured)":
            continue
        old = pick.get((data, n, "before (all cores, flags)"))
        hand = max((pick[k]["examples_per_s"] for k in ((data, n, "--threads 1"), (data, n, "--threads 2"))
                    if k in pick), default=None)
        parts = [f"{data}, {n} busy: default {r['examples_per_s']} ex/s"]
        if old:
            parts.append(f"{r['examples_per_s'] / old['examples_per_s']:.2f}x the 'before' default")
        if hand:
            parts.append(f"{r['examples_per_s'] / hand:.2f}x the best hand-set --threads")
        hf = pick.get((data, n, "HF Trainer"))
        if hf:
            parts.append(f"{r['examples_per_s'] / hf['examples_per_s']:.2f}x HF Trainer, accuracy "
                         f"{100 * (r['test_accuracy'] - hf['test_accuracy']):+.1f} pt")
        fp32, bf16 = pick.get((data, n, "measured threads, fp32")), pick.get((data, n, "measured threads, bf16"))
        if fp32 and bf16:
            best = max(fp32["examples_per_s"], bf16["examples_per_s"])
            parts.append(f"auto precision ({r['precision']}) at {r['examples_per_s'] / best:.2f}x the faster of "
                         f"fp32/bf16")
        lines.append("; ".join(parts))
    return lines


if __name__ == "__main__":
    main()
