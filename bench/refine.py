"""Multi-step refinement vs the single-step model at the same training wall time, on CoNLL-2003 and SST-2.

Run: make bench-refine   (or .venv/bin/python bench/refine.py [--only conll,sst2] [--epochs 2])
For each dataset, in this one process: train the single-step model (stepwise recommended settings) for
--epochs; train a refiner (--refine-steps 4) for the number of optimizer steps that costs about the same
training time (a refiner step adds a no-grad forward on half of the batches: ~1.17x); then score the
test set with the single-step model and with the refiner at T = 1..4 fixed steps and with adaptive
stopping (stop when the prediction no longer changes, or once the model's confidence reaches a threshold).
"""

from __future__ import annotations

import argparse
import shutil
import time

from common import OUT, SHARED, emit, need

REFINER_STEP_COST = 1.17
CONFIDENCE = (0.9, 0.97)  # adaptive stopping: an example leaves once its confidence reaches this


def score(predictor, examples, steps: int, adaptive: bool, confidence: float | None = None) -> dict:
    task = predictor.task
    start = time.perf_counter()
    result = predictor.refine(examples, steps=steps, stop_on_no_change=adaptive, confidence=confidence)
    seconds = time.perf_counter() - start
    pred = [task.ids_to_labels(p) for p in result.predictions]
    metrics = task.metrics([e.label for e in examples], pred)
    changed = result.stats[-1].changed if len(result.stats) > 1 else 0.0
    return {"metric": round(metrics[task.default_metric], 4),
            "ms_per_example": round(1000 * seconds / len(examples), 3), "mean_steps": round(result.mean_steps, 3),
            "changed_last_step": round(changed, 4)}


def run_dataset(name: str, task: str, train, dev, test, epochs: float, options: dict,
                noise: float | None = None, reuse_single: bool = False) -> list[dict]:
    import stepwise
    from stepwise.api import Run
    from stepwise.data.readers import read_examples

    out = OUT / (f"refine_{name}" + (f"_noise{noise:g}" if noise is not None else ""))
    shutil.rmtree(out / "refiner", ignore_errors=True)
    base = {"task": task, "train": str(train), "dev": str(dev), "test": str(test), "quiet": True, "patience": None,
            **options}
    previous = OUT / f"refine_{name}" / "single"
    if reuse_single and (previous / "results.json").exists():  # deterministic: the same seed gives the same model
        single = Run.from_dir(previous)
    else:
        shutil.rmtree(out / "single", ignore_errors=True)
        single = stepwise.train(**base, out=str(out / "single"), epochs=epochs)
    steps = round(single.results["train"]["steps"] / REFINER_STEP_COST)
    refiner = stepwise.train(**base, out=str(out / "refiner"), max_steps=steps, refine_steps=4,
                             **({} if noise is None else {"refine_noise": noise}))
    examples = read_examples(test, prefer=stepwise.load(single.path).task.read_format)
    single_predictor, refiner_predictor = stepwise.load(single.path), stepwise.load(refiner.path)
    single_predictor.task.prepare(examples)
    rows = []
    base_row = score(single_predictor, examples, 1, False)
    rows.append({"data": name, "model": "single-step", "T": 1, **base_row,
                 "train_seconds": single.results["train"]["seconds"], "train_steps": single.results["train"]["steps"]})
    for t in (1, 2, 3, 4):
        rows.append({"data": name, "model": "refiner", "T": t, **score(refiner_predictor, examples, t, False),
                     "train_seconds": refiner.results["train"]["seconds"],
                     "train_steps": refiner.results["train"]["steps"]})
    for tau in (None, *CONFIDENCE):
        label = "adaptive: no change" + (f" or conf>={tau}" if tau else "")
        rows.append({"data": name, "model": "refiner", "T": label, **score(refiner_predictor, examples, 4, True, tau),
                     "train_seconds": refiner.results["train"]["seconds"],
                     "train_steps": refiner.results["train"]["steps"]})
    for row in rows:
        row["gain_vs_single"] = round(100 * (row["metric"] - base_row["metric"]), 2)
        row["latency_ratio"] = round(row["ms_per_example"] / base_row["ms_per_example"], 2)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="conll,sst2")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--noise", type=float, default=None, help="the refiner's corruption rate (default: stepwise's)")
    parser.add_argument("--reuse-single", action="store_true",
                        help="take the single-step model from an earlier run of this bench instead of retraining it")
    args = parser.parse_args()
    rows = []
    if "conll" in args.only:
        data = need(SHARED / "conll2003")
        rows += run_dataset("conll2003", "tag", data / "train.txt", data / "valid.txt", data / "test.txt",
                            args.epochs, {"lr": 1e-4, "casing": True}, args.noise, args.reuse_single)
    if "sst2" in args.only:
        data = need(SHARED / "sst2")
        rows += run_dataset("sst2", "classify", data / "train.tsv", data / "dev.tsv", data / "test.tsv", args.epochs,
                            {"lr": 1e-4}, args.noise, args.reuse_single)
    columns = ["data", "model", "T", "metric", "gain_vs_single", "mean_steps", "changed_last_step", "ms_per_example",
               "latency_ratio", "train_seconds", "train_steps"]
    emit("refine" if args.noise is None else f"refine_noise{args.noise:g}", rows, columns, {})


if __name__ == "__main__":
    main()
