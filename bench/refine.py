"""Multi-step refinement vs the single-step model at the same training wall time, on CoNLL-2003 and SST-2.

Run: make bench-refine   (or .venv/bin/python bench/refine.py [--only conll,sst2,conll-doc,conll-doc-head] [--epochs 2])
For each dataset, in this one process: train the single-step model (stepwise recommended settings) for
--epochs; train a refiner (--refine-steps 4) for the number of optimizer steps that costs about the same
training time (a refiner step adds a no-grad forward on half of the batches: ~1.17x); then score the
test set with the single-step model and with the refiner at T = 1..4 fixed steps and with adaptive
stopping (stop when the prediction no longer changes, or once the model's confidence reaches a threshold).

conll-doc (document-level refinement, `--doc-context`): the doc-context pipeline at --epochs (two step-1
fold models on half the documents each, then the final model) vs the single-step model trained for as many
epochs as the pipeline's whole training time buys (E x total / final seconds: the final model costs what a
single-step model does per epoch); test F1 at step 1 and step 2. A smoke run on a slice with the tiny test
model: `--only conll-doc --limit 300 --epochs 1 --model DIR --max-length 128` (refine_doc_limitN.json).

conll-doc-head (`--doc-context head`): one tagger per seed in --seeds, trained for --epochs; its step 1 *is*
the single-step model (the head is fitted on dev after training, in seconds), so the comparison is paired:
test F1 at step 1 and step 2, the head's fit time against the training time, and its dev numbers
(step 1 and cross-validated step 2). The head learns from dev's labels, which the single-step model only
scores; conll-doc-control asks whether those labels would serve the tagger better: the single-step model
trained on train + dev (same epochs, seed 0), test F1 against the head run's rows.
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
    from stepwise import Run
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


def slice_conll(src, dst, limit: int | None):
    """The first `limit` sentences of a CoNLL file, -DOCSTART- lines kept (the whole file when None)."""
    if limit is None:
        return src
    lines, sentences, in_sentence = [], 0, False
    for line in open(src, encoding="utf-8"):
        if not line.strip():
            sentences += in_sentence and not lines[-1].startswith("-DOCSTART-")
            in_sentence = False
            if sentences >= limit:
                break
        else:
            in_sentence = True
        lines.append(line)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text("".join(lines) + "\n", encoding="utf-8")
    return dst


def run_documents(train, dev, test, epochs: float, options: dict, limit: int | None = None,
                  fold_epochs: float | None = None) -> list[dict]:
    """Document context vs single-step at equal total training time (see the module doc)."""
    import stepwise
    from stepwise.data.readers import read_examples

    out = OUT / ("refine_doc" + (f"_limit{limit}" if limit else "") + (f"_folds{fold_epochs:g}" if fold_epochs else ""))
    shutil.rmtree(out, ignore_errors=True)
    train, dev, test = (slice_conll(path, out / "data" / path.name, limit) for path in (train, dev, test))
    base = {"task": "tag", "train": str(train), "dev": str(dev), "test": str(test), "quiet": True, "patience": None,
            **options}
    doc = stepwise.train(**base, out=str(out / "doc_context"), epochs=epochs, doc_context="model",
                         doc_fold_epochs=fold_epochs)
    notes = doc.results["doc_context"]
    single_epochs = round(epochs * notes["total_train_seconds"] / max(notes["final_train_seconds"], 1e-9), 1)
    single = stepwise.train(**base, out=str(out / "single"), epochs=single_epochs)
    examples = read_examples(test, prefer="conll")  # documents numbered by their -DOCSTART- lines
    single_predictor, doc_predictor = stepwise.load(single.path), stepwise.load(doc.path)
    single_predictor.task.prepare(examples)
    common = {"data": "conll2003" + (f"[:{limit}]" if limit else ""), "documents": len({e.doc for e in examples})}
    rows = [{**common, "model": "single-step", "epochs": single_epochs, "T": 1,
             **score(single_predictor, examples, 1, False), "train_seconds": single.results["train"]["seconds"],
             "train_steps": single.results["train"]["steps"]}]
    for t in (1, 2):
        rows.append({**common, "model": "doc-context", "epochs": epochs, "T": t,
                     **score(doc_predictor, examples, t, False), "train_seconds": notes["total_train_seconds"],
                     "fold_seconds": notes["fold_train_seconds"], "final_seconds": notes["final_train_seconds"],
                     "train_steps": sum(notes["fold_steps"]) + doc.results["train"]["steps"],
                     "out_of_fold_train_f1": notes["out_of_fold_train_f1"]})
    for row in rows:
        row["gain_vs_single"] = round(100 * (row["metric"] - rows[0]["metric"]), 2)
    return rows


def run_document_head(train, dev, test, epochs: float, options: dict, seeds: list[int],
                      limit: int | None = None) -> list[dict]:
    """`--doc-context head` against its own step 1, the single-step model (see the module doc)."""
    import stepwise
    from stepwise.data.readers import read_examples

    out = OUT / ("refine_doc_head" + (f"_limit{limit}" if limit else ""))
    train, dev, test = (slice_conll(path, out / "data" / path.name, limit) for path in (train, dev, test))
    examples = read_examples(test, prefer="conll")
    rows = []
    for seed in seeds:
        target = out / f"seed{seed}"
        shutil.rmtree(target, ignore_errors=True)
        run = stepwise.train(task="tag", train=str(train), dev=str(dev), test=str(test), quiet=True, patience=None,
                             out=str(target), epochs=epochs, seed=seed, doc_context="head", **options)
        notes, predictor = run.results["doc_context"], stepwise.load(run.path)
        predictor.task.prepare(examples)
        common = {"data": "conll2003" + (f"[:{limit}]" if limit else ""), "seed": seed, "epochs": epochs,
                  "train_seconds": run.results["train"]["seconds"], "head_fit_seconds": notes["fit_seconds"],
                  "head_C": notes["C"], "head_kept": notes["kept"], "dev_step1": notes["step1_dev_f1"],
                  "dev_step2_cv": notes["cross_validated_dev_f1"][str(notes["C"])]}
        first = None
        for t in (1, 2):
            row = {**common, "model": "single-step (step 1)" if t == 1 else "+ document head (step 2)", "T": t,
                   **score(predictor, examples, t, False)}
            first = first if first is not None else row["metric"]
            row["gain_vs_single"] = round(100 * (row["metric"] - first), 2)
            rows.append(row)
    return rows


def run_dev_control(train, dev, test, epochs: float, options: dict) -> list[dict]:
    """The single-step tagger trained on train + dev (dev still scored, so it no longer selects anything)."""
    import stepwise
    from stepwise.data.readers import read_examples

    out = OUT / "refine_doc_control"
    shutil.rmtree(out, ignore_errors=True)
    both = out / "data" / "train_plus_dev.txt"
    both.parent.mkdir(parents=True, exist_ok=True)
    both.write_text(train.read_text(encoding="utf-8").rstrip("\n") + "\n\n" + dev.read_text(encoding="utf-8"),
                    encoding="utf-8")
    run = stepwise.train(task="tag", train=str(both), dev=str(dev), test=str(test), quiet=True, patience=None,
                         out=str(out / "run"), epochs=epochs, seed=0, **options)
    predictor = stepwise.load(run.path)
    examples = read_examples(test, prefer="conll")
    predictor.task.prepare(examples)
    return [{"data": "conll2003", "seed": 0, "model": "single-step on train + dev", "epochs": epochs, "T": 1,
             **score(predictor, examples, 1, False), "train_seconds": run.results["train"]["seconds"],
             "train_examples": run.results["train"]["examples"]}]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="conll,sst2,conll-doc,conll-doc-head,conll-doc-control")
    parser.add_argument("--seeds", default="0,1", help="conll-doc-head: one tagger per seed")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--noise", type=float, default=None, help="the refiner's corruption rate (default: stepwise's)")
    parser.add_argument("--reuse-single", action="store_true",
                        help="take the single-step model from an earlier run of this bench instead of retraining it")
    parser.add_argument("--fold-epochs", type=float, default=None,
                        help="conll-doc: epochs of the two fold taggers (default: --epochs)")
    parser.add_argument("--limit", type=int, default=None,
                        help="conll-doc: only the first N sentences of each CoNLL file (a smoke run)")
    parser.add_argument("--model", default=None, help="conll-doc: the pretrained encoder (default: stepwise's)")
    parser.add_argument("--max-length", type=int, default=None, help="conll-doc: sub-tokens per window (default: "
                        "stepwise's; the tiny test model takes at most 128)")
    args = parser.parse_args()
    only = set(args.only.split(","))
    rows = []
    if "conll" in only:
        data = need(SHARED / "conll2003")
        rows += run_dataset("conll2003", "tag", data / "train.txt", data / "valid.txt", data / "test.txt",
                            args.epochs, {"lr": 1e-4, "casing": True}, args.noise, args.reuse_single)
    if "sst2" in only:
        data = need(SHARED / "sst2")
        rows += run_dataset("sst2", "classify", data / "train.tsv", data / "dev.tsv", data / "test.tsv", args.epochs,
                            {"lr": 1e-4}, args.noise, args.reuse_single)
    columns = ["data", "model", "T", "metric", "gain_vs_single", "mean_steps", "changed_last_step", "ms_per_example",
               "latency_ratio", "train_seconds", "train_steps"]
    if rows:
        emit("refine" if args.noise is None else f"refine_noise{args.noise:g}", rows, columns, {})
    # the document rows: recommended tagging settings, and the encoder and window of --model / --max-length
    doc_options = {"lr": 1e-4, "casing": True, **({"model": args.model} if args.model else {}),
                   **({"max_length": args.max_length} if args.max_length else {})}
    if "conll-doc" in only:
        data = need(SHARED / "conll2003")
        doc_rows = run_documents(data / "train.txt", data / "valid.txt", data / "test.txt", args.epochs, doc_options,
                                 args.limit, args.fold_epochs)
        columns = ["data", "documents", "model", "epochs", "T", "metric", "gain_vs_single", "changed_last_step",
                   "ms_per_example", "train_seconds", "fold_seconds", "final_seconds", "train_steps",
                   "out_of_fold_train_f1"]
        emit("refine_doc" + (f"_limit{args.limit}" if args.limit else "") +
             (f"_folds{args.fold_epochs:g}" if args.fold_epochs else ""), doc_rows, columns,
             {"epochs": args.epochs, "fold_epochs": args.fold_epochs})
    if "conll-doc-head" in only:
        data = need(SHARED / "conll2003")
        seeds = [int(s) for s in args.seeds.split(",")]
        head_rows = run_document_head(data / "train.txt", data / "valid.txt", data / "test.txt", args.epochs,
                                      doc_options, seeds, args.limit)
        columns = ["data", "seed", "model", "epochs", "T", "metric", "gain_vs_single", "changed_last_step",
                   "ms_per_example", "train_seconds", "head_fit_seconds", "head_C", "dev_step1", "dev_step2_cv"]
        emit("refine_doc_head" + (f"_limit{args.limit}" if args.limit else ""), head_rows, columns,
             {"epochs": args.epochs, "seeds": seeds})
    if "conll-doc-control" in only:
        data = need(SHARED / "conll2003")
        control = run_dev_control(data / "train.txt", data / "valid.txt", data / "test.txt", args.epochs,
                                  doc_options)
        emit("refine_doc_control", control, ["data", "seed", "model", "epochs", "T", "metric", "ms_per_example",
                                             "train_seconds", "train_examples"], {"epochs": args.epochs})


if __name__ == "__main__":
    main()
