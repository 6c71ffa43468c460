"""`stepwise search` against the recommended defaults at the same total training time, on SST-2 and CoNLL slices.

Run: make bench-search   (or cd bench && ../.venv/bin/python search.py [--only sst2,conll] [--k 3])

Per data set (seeded slices of train and dev, so that one default run takes about a minute here):
  0. a 2-step warm-up run (imports, first-call costs), outside every budget;
  1. the defaults (`stepwise train` with no tuning flags) once, seed 0;
  2. the same defaults with seeds 1..K-1, and the best of the K runs by dev: B = the CPU seconds of the K runs;
  3. `stepwise search` (default space, median pruner, seed 0), one trial at a time (each call with one more
     --trials continues the study), starting no trial once it has used B CPU seconds: like --timeout, it
     may run over by part of one trial (its real seconds are in the table).
Time is this process's CPU time (all its threads), not wall time: the host is shared, and another job
slows every wall clock in here unevenly, while CPU seconds count only the work done. Wall seconds are
shown beside them. Every run is judged on dev only; the test set is scored once per row, on the run
that row picked.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import time
from pathlib import Path

from common import OUT, SHARED, emit, need

SLICES = {"sst2": {"train": 1200, "dev": 400, "test": None}, "conll": {"train": 800, "dev": 400, "test": 1200}}


def tsv_slice(src: Path, dst: Path, n: int | None, seed: int) -> Path:
    lines = [ln for ln in src.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if n is not None:  # n lines drawn with a seed, kept in file order
        lines = [lines[i] for i in sorted(random.Random(seed).sample(range(len(lines)), n))]
    dst.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dst


def conll_slice(src: Path, dst: Path, n: int | None, seed: int) -> Path:
    """n sentences drawn with a seed, in file order (-DOCSTART- lines dropped: documents do not matter here)."""
    blocks, current = [], []
    for line in src.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
            current = []
        elif not line.startswith("-DOCSTART-"):
            current.append(line)
    if current:
        blocks.append(current)
    if n is not None:
        blocks = [blocks[i] for i in sorted(random.Random(seed).sample(range(len(blocks)), n))]
    dst.write_text("".join("\n".join(b) + "\n\n" for b in blocks), encoding="utf-8")
    return dst


def data_files(data: str) -> tuple[dict[str, Path], str, str]:
    folder = OUT / "search_data"
    folder.mkdir(parents=True, exist_ok=True)
    sizes = SLICES[data]
    if data == "sst2":
        src = need(SHARED / "sst2")
        names = {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}
        cut, suffix, task, metric = tsv_slice, ".tsv", "classify", "accuracy"
    else:
        src = need(SHARED / "conll2003")
        names = {"train": "train.txt", "dev": "valid.txt", "test": "test.txt"}
        cut, suffix, task, metric = conll_slice, ".conll", "tag", "f1"
    files = {split: cut(src / name, folder / f"{data}_{split}{suffix}", sizes[split], seed=i)
             for i, (split, name) in enumerate(names.items())}
    return files, task, metric


def defaults_run(task: str, files: dict[str, Path], name: str, seed: int) -> tuple[dict, float, float]:
    """`stepwise train` with the recommended defaults (no tuning flag), without --test; CPU and wall seconds."""
    import stepwise

    out = OUT / name
    shutil.rmtree(out, ignore_errors=True)
    cpu, wall = time.process_time(), time.perf_counter()
    run = stepwise.train(task=task, train=str(files["train"]), dev=str(files["dev"]), out=str(out), seed=seed,
                         quiet=True)
    return {"path": str(out), **run.results}, time.process_time() - cpu, time.perf_counter() - wall


def test_score(run: str, test: Path, metric: str) -> float:
    import stepwise

    return round(stepwise.evaluate(run, str(test))["metrics"][metric], 4)


def budgeted_search(data: str, task: str, files: dict[str, Path], budget: float) -> tuple[dict, float, float]:
    """Trials one by one until `budget` CPU seconds are used (no trial starts after that); CPU and wall seconds."""
    from stepwise.recipes.search import search

    out = OUT / f"search_{data}"
    shutil.rmtree(out, ignore_errors=True)
    cpu, wall, trials, summary = time.process_time(), time.perf_counter(), 0, {}
    while time.process_time() - cpu < budget:
        trials += 1
        summary = search(trials=trials, out=str(out), task=task, train=str(files["train"]), dev=str(files["dev"]),
                         seed=0, quiet=True, echo=lambda line: print(f"{data} {line}", flush=True))
    return summary, time.process_time() - cpu, time.perf_counter() - wall


def bench(data: str, k: int) -> list[dict]:
    import stepwise

    files, task, metric = data_files(data)
    stepwise.train(task=task, train=str(files["train"]), dev=str(files["dev"]), out=str(OUT / "search_warmup"),
                   max_steps=2, overwrite=True, quiet=True)  # imports and first-call costs, outside every budget
    runs, cpus, walls = [], [], []
    for seed in range(k):
        results, cpu, wall = defaults_run(task, files, f"search_{data}_defaults_seed{seed}", seed)
        runs.append(results)
        cpus.append(cpu)
        walls.append(wall)
        print(f"{data} defaults seed {seed}: dev {metric} {results['dev'][metric]:.4f}, {cpu:.1f} CPU s, "
              f"{wall:.1f} s", flush=True)
    budget = sum(cpus)  # what the defaults arm spent on its K runs
    best_seed = max(range(k), key=lambda s: (runs[s]["dev"][metric], -s))
    rows = [{"data": data, "system": "defaults, seed 0", "runs": 1, "pruned": 0, "cpu_seconds": round(cpus[0], 1),
             "wall_seconds": round(walls[0], 1), f"dev_{metric}": round(runs[0]["dev"][metric], 4),
             f"test_{metric}": test_score(runs[0]["path"], files["test"], metric), "picked": "seed 0"},
            {"data": data, "system": f"defaults, best of {k} seeds by dev", "runs": k, "pruned": 0,
             "cpu_seconds": round(sum(cpus), 1), "wall_seconds": round(sum(walls), 1),
             f"dev_{metric}": round(runs[best_seed]["dev"][metric], 4),
             f"test_{metric}": test_score(runs[best_seed]["path"], files["test"], metric),
             "picked": f"seed {best_seed}"}]
    summary, cpu, wall = budgeted_search(data, task, files, budget)
    best = summary["best"]
    picked = ", ".join(f"{name}={value:.3g}" if isinstance(value, float) else f"{name}={value}"
                       for name, value in sorted(best["params"].items()))
    rows.append({"data": data, "system": f"search, budget {budget:.0f} CPU s (= {k} default runs)",
                 "runs": summary["trials"].get("COMPLETE", 0) + summary["trials"].get("PRUNED", 0),
                 "pruned": summary["trials"].get("PRUNED", 0), "cpu_seconds": round(cpu, 1),
                 "wall_seconds": round(wall, 1), f"dev_{metric}": round(best[f"dev_{metric}"], 4),
                 f"test_{metric}": test_score(best["run"], files["test"], metric),
                 "picked": f"trial {best['trial']}: {picked}"})
    print(rows, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="sst2,conll")
    parser.add_argument("--k", type=int, default=3, help="default runs (seeds); the search gets their CPU time")
    parser.add_argument("--smoke", action="store_true", help="tiny slices: checks the script, numbers meaningless")
    args = parser.parse_args()
    if args.smoke:
        for sizes in SLICES.values():
            sizes.update(train=64, dev=32, test=32)
    load_start = os.getloadavg()
    rows = [row for data in args.only.split(",") for row in bench(data, args.k)]
    columns = ["data", "system", "runs", "pruned", "cpu_seconds", "wall_seconds", "dev_accuracy", "test_accuracy",
               "dev_f1", "test_f1", "picked"]
    emit("search_" + "_".join(args.only.split(",")), rows, columns, {"k": args.k, "slices": SLICES,
                                                           "loadavg_start": load_start, "loadavg_end": os.getloadavg()})


if __name__ == "__main__":
    main()
