"""Training-time learner-noise augmentation (`--augment R`) on SST-2 and CoNLL-2003.

Run: make bench-augment   (or .venv/bin/python bench/augment.py [--only sst2,conll] [--rate 1.0])
For each dataset, in this one process and with the recommended settings: no augmentation; `--augment R`
(a seeded noisy copy of every training example: twice the examples per epoch); and no augmentation at
the same number of optimizer steps (twice the epochs), so a gain is not just more training. Test metric,
training time. Augmentation stays off by default unless it pays here.
"""

from __future__ import annotations

import argparse

from common import SHARED, emit, need, timed_train

RECOMMENDED = {"sst2": {"task": "classify"}, "conll": {"task": "tag", "casing": True, "lr": 1e-4, "batch_size": 32}}
EPOCHS = 3


def row(data: str, name: str, files: tuple, metric: str, **options) -> dict:
    task = options.pop("task")
    run, wall = timed_train(task, f"augment_{data}_{name}", *files, **options)
    r = run.results
    return {"data": data, "system": name, f"test_{metric}": round(r["test"][metric], 4),
            "dev": round(r["dev"][metric], 4), "train_seconds": r["train"]["seconds"], "steps": r["train"]["steps"],
            "best_step": r["train"]["best_step"], "examples": r["train"]["examples"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="sst2,conll")
    parser.add_argument("--rate", type=float, default=1.0)
    parser.add_argument("--epochs", type=float, default=EPOCHS)
    parser.add_argument("--equal-steps", default="sst2", help="data sets that also get the no-augmentation row at "
                        "twice the epochs (CoNLL's costs ~15 minutes here)")
    args = parser.parse_args()
    rows = []
    for data in args.only.split(","):
        if data == "sst2":
            d = need(SHARED / "sst2")
            files, metric = (d / "train.tsv", d / "dev.tsv", d / "test.tsv"), "accuracy"
        else:
            d = need(SHARED / "conll2003")
            files, metric = (d / "train.txt", d / "valid.txt", d / "test.txt"), "f1"
        options = {**RECOMMENDED[data], "patience": None}
        epochs = args.epochs
        rows.append(row(data, f"no augmentation, {epochs:g} epochs", files, metric, epochs=epochs, **options))
        rows.append(row(data, f"--augment {args.rate:g}, {epochs:g} epochs", files, metric, epochs=epochs,
                        augment=args.rate, **options))
        if data in args.equal_steps.split(","):
            rows.append(row(data, f"no augmentation, {2 * epochs:g} epochs (same steps)", files, metric,
                            epochs=2 * epochs, **options))
        print(rows[-3:], flush=True)
    columns = ["data", "system", "test_accuracy", "test_f1", "dev", "train_seconds", "steps", "best_step", "examples"]
    emit("augment_" + "_".join(args.only.split(",")), rows, columns, {"rate": args.rate, "epochs": args.epochs})


if __name__ == "__main__":
    main()
