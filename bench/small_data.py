"""Small data (issue 35): stepwise's defaults vs HF Trainer (3 epochs) vs frozen MiniLM + logistic regression.

    flock /tmp/stepwise-bench.lock .venv/bin/python bench/small_data.py --sets faq --seeds 0,1,2,3,4
    .venv/bin/python bench/small_data.py --sets sst2,twitter_fin --sizes 500,1000 --only stepwise
    .venv/bin/python bench/small_data.py --summary          # the table over every row run so far

Sets: the first 500 / 1000 / 3000 of a seeded shuffle of SST-2's and twitter_fin's training files (the same
subset for every seed: the seeds vary the training only), each with a dev of 300 (SST-2: from its dev file;
twitter_fin: from its valid file, whose other 2,088 texts are the test); and the FAQ's 39 categories as
intents (faq_zaragoza: 298 train / 101 dev / 104 test questions). Every row is one (set, size, system, seed)
appended to bench/out/small_data.jsonl, so slices run under the lock one at a time add up; `--summary`
prints mean, worst seed, spread and train seconds per cell from that file, as a table and a JSON line.
HF Trainer is bench/classify.py's (reference settings: bs 32, lr 5e-5, 10% warmup, head seeded; torch threads =
the cores other processes leave free, as stepwise counts them, so a busy host penalises neither); the
stepwise rows are `stepwise.train` with its defaults (or `--options` JSON, under `--variant` NAME);
the stepwise time is its training loop plus its dev evaluations (HF evaluates nothing while training) plus
the head's linear probe when the small-data rule runs one.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import time
from pathlib import Path

from common import OUT, SHARED, cpu_flags, need, table, timed_train

ROWS = OUT / "small_data.jsonl"
DATA = OUT / "small_data" / "data"
DEV_SIZE = 300
SIZED = ("sst2", "twitter_fin")


def _write(path: Path, examples) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": e.text, "label": e.label}) + "\n" for e in examples))
    return path


def make_set(name: str, size: int | None) -> dict[str, Path]:
    """The set's train/dev/test as JSONL files under bench/out/small_data/data (made once, seeded)."""
    from stepwise.data.readers import read_examples

    folder = DATA / (name if size is None else f"{name}_{size}")
    files = {split: folder / f"{split}.jsonl" for split in ("train", "dev", "test")}
    if all(p.exists() for p in files.values()):
        return files
    if name == "faq":
        src = need(SHARED / "faq_zaragoza")
        for split, path in files.items():
            _write(path, read_examples(src / f"{split}.jsonl", text_column="question", label_column="category"))
        return files
    if name == "sst2":
        src = need(SHARED / "sst2")
        train, dev, test = (read_examples(src / f"{s}.tsv") for s in ("train", "dev", "test"))
        random.Random(0).shuffle(dev)
        dev = dev[:DEV_SIZE]
    elif name == "twitter_fin":
        src = need(SHARED / "twitter_fin")
        train, valid = read_examples(src / "train.csv"), read_examples(src / "valid.csv")
        random.Random(0).shuffle(valid)
        dev, test = valid[:DEV_SIZE], valid[DEV_SIZE:]
    else:
        raise SystemExit(f"unknown set {name!r}: use faq, sst2, twitter_fin")
    random.Random(0).shuffle(train)
    for split, part in (("train", train[:size]), ("dev", dev), ("test", test)):
        _write(files[split], part)
    return files


def frozen_lr(files: dict[str, Path]) -> dict:
    """The head SetFit uses: frozen all-MiniLM-L6-v2 (mean-pooled, normalised) + LogisticRegression(C=10)."""
    import numpy as np
    from answer_anchors import st_encoder
    from sklearn.linear_model import LogisticRegression

    from stepwise.data.readers import read_examples

    train, test = read_examples(files["train"]), read_examples(files["test"])
    start = time.perf_counter()
    encode = st_encoder()
    x = encode([e.text for e in train])
    clf = LogisticRegression(C=10, max_iter=5000).fit(x, [e.label for e in train])
    seconds = time.perf_counter() - start
    pred = clf.predict(encode([e.text for e in test]))
    acc = float(np.mean([p == e.label for p, e in zip(pred, test)]))
    return {"test_accuracy": round(acc, 4), "train_seconds": round(seconds, 1)}


def hf_row(files: dict[str, Path], seed: int) -> dict:
    """HF Trainer on the cores other processes leave free (counted as stepwise counts them): on a busy host,
    torch's default of every core makes its threads wait for each other (30 steps took 278 s instead of ~10 s
    on 2026-12-08), a penalty that would be the host's, not the method's."""
    import torch
    from classify import hf_trainer

    from stepwise.threads import probe

    saved, (threads, others) = torch.get_num_threads(), probe()
    torch.set_num_threads(threads)
    try:
        r = hf_trainer(files["train"], files["test"], 3.0, seed=seed)
    finally:
        torch.set_num_threads(saved)
    return {"test_accuracy": r["test_accuracy"], "train_seconds": r["train_seconds"], "threads": threads,
            "others_cores": round(others, 2)}


def stepwise_row(files: dict[str, Path], seed: int, options: dict, tag: str) -> dict:
    run, wall = timed_train("classify", f"small_data/runs/{tag}_s{seed}", files["train"], files["dev"],
                            files["test"], seed=seed, **options)
    r = run.results
    probe = r.get("small_data", {}).get("probe", {}).get("seconds", 0.0)  # the head's linear probe, if one ran
    out = {"test_accuracy": round(r["test"]["accuracy"], 4),
           "train_seconds": round(r["train"]["seconds"] + r["train"]["eval_seconds"] + probe, 1),
           "loop_seconds": r["train"]["seconds"], "wall_seconds": wall, "steps": r["train"]["steps"],
           "best_step": r["train"]["best_step"], "precision": r["train"]["precision"]}
    if "small_data" in r:
        out["rule"] = r["small_data"]
    return out


def cells(args) -> list[tuple[str, int | None]]:
    out = []
    for name in args.sets.split(","):
        if name == "faq":
            out.append(("faq", None))
        else:
            out += [(name, int(n)) for n in args.sizes.split(",")]
    return out


def summary(variants: list[str] | None = None) -> None:
    rows = [json.loads(line) for line in ROWS.read_text().splitlines()] if ROWS.exists() else []
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if variants and r["system"] not in variants:
            continue
        groups.setdefault((r["set"], r["size"] or 0, r["system"]), []).append(r)
    out = []
    for (name, size, system), rs in sorted(groups.items()):
        last = {r["seed"]: r for r in rs}  # a rerun of a seed replaces the earlier row
        accs = [r["test_accuracy"] for r in last.values()]
        secs = [r["train_seconds"] for r in last.values()]
        out.append({"set": name, "size": size or "", "system": system, "seeds": ",".join(map(str, sorted(last))),
                    "mean": round(statistics.mean(accs), 4), "worst": min(accs),
                    "spread_pt": round(100 * (max(accs) - min(accs)), 1),
                    "train_s": round(statistics.mean(secs), 1)})
    print(table(out, ["set", "size", "system", "seeds", "mean", "worst", "spread_pt", "train_s"]))
    print(json.dumps({"bench": "small_data", "summary": out, "cpu_flags": cpu_flags()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", default="faq,sst2,twitter_fin")
    parser.add_argument("--sizes", default="500,1000,3000", help="training sizes of sst2 and twitter_fin")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--only", default="lr,hf,stepwise", help="systems: lr, hf, stepwise")
    parser.add_argument("--variant", default="stepwise defaults", help="the stepwise rows' name")
    parser.add_argument("--options", default="{}", help="stepwise options as JSON, e.g. '{\"epochs\": 10}'")
    parser.add_argument("--untimed", action="store_true", help="rows for accuracy only (run niced, without the "
                        "lock): every system's name gets ' (untimed)'")
    parser.add_argument("--summary", action="store_true", help="print the table of the rows run so far")
    parser.add_argument("--systems", default=None, help="--summary: only these systems (comma-separated)")
    args = parser.parse_args()
    if args.summary:
        return summary(args.systems.split(",") if args.systems else None)
    options, parts = json.loads(args.options), args.only.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    ROWS.parent.mkdir(parents=True, exist_ok=True)
    done = []
    for name, size in cells(args):
        files = make_set(name, size)
        jobs = [("frozen MiniLM + LR (C=10)", None)] if "lr" in parts else []
        for seed in seeds:
            jobs += [("HF Trainer 3 ep", seed)] if "hf" in parts else []
            jobs += [(args.variant, seed)] if "stepwise" in parts else []
        for system, seed in jobs:
            if system.startswith("frozen"):
                result = frozen_lr(files)
            elif system.startswith("HF"):
                result = hf_row(files, seed)
            else:
                tag = f"{name}{size or ''}_{args.variant.replace(' ', '_')}" + ("_untimed" if args.untimed else "")
                result = stepwise_row(files, seed, options, tag)
            row = {"set": name, "size": size, "system": system + (" (untimed)" if args.untimed else ""),
                   "seed": 0 if seed is None else seed, **result,
                   "options": options if system == args.variant else None, "commit": commit,
                   "cpu_flags": cpu_flags(), "load1": round(os.getloadavg()[0], 1),
                   "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            with ROWS.open("a") as f:
                f.write(json.dumps(row) + "\n")
            done.append(row)
            print(f"{name} {size or ''} {system} seed {row['seed']}: {result}", flush=True)
    cols = ["set", "size", "system", "seed", "test_accuracy", "train_seconds"]
    print(table(done, cols))
    print(json.dumps({"bench": "small_data", "rows": done}))


if __name__ == "__main__":
    main()
