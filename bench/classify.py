"""SST-2: Hugging Face Trainer vs stepwise with the same settings, then stepwise's recommended defaults.

Run: make bench-classify   (or .venv/bin/python bench/classify.py [--only hf,same,defaults])
All runs happen in this one process on the same data so the ratios are fair on a noisy machine.
"""

from __future__ import annotations

import argparse
import time

from common import HF_SETTINGS, SHARED, emit, hf_training_args, lever_rows, need, timed_train


def hf_trainer(train_path, test_path, epochs: float, save=None, seed: int = HF_SETTINGS["seed"], read=None) -> dict:
    """HF Trainer on SST-2 (or any labeled file: `read` gives reader options); with `save`, the fine-tuned model
    and tokenizer are written there (bench/infer.py). The head's initialisation follows `seed` too."""
    import numpy as np
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        set_seed,
    )

    from stepwise.data.readers import read_examples
    from stepwise.modeldir import default_model_dir

    train = read_examples(train_path, **(read or {}))
    test = read_examples(test_path, **(read or {}))
    label_ids = {label: i for i, label in enumerate(sorted({e.label for e in train}))}  # SST-2: "0", "1" → 0, 1
    tok = AutoTokenizer.from_pretrained(default_model_dir())
    set_seed(seed)  # Trainer seeds only after the model exists: the head's initialisation follows the seed too
    model = AutoModelForSequenceClassification.from_pretrained(default_model_dir(), num_labels=len(label_ids))

    def encode(examples):
        enc = tok([e.text for e in examples], truncation=True, max_length=256)
        return [{"input_ids": ids, "attention_mask": mask, "labels": label_ids.get(e.label, -100)}
                for ids, mask, e in zip(enc["input_ids"], enc["attention_mask"], examples)]

    args = hf_training_args("hf_classify", epochs, seed)
    trainer = Trainer(model=model, args=args, train_dataset=encode(train),
                      data_collator=DataCollatorWithPadding(tok))
    out = trainer.train()
    if save is not None:
        trainer.save_model(str(save))
        tok.save_pretrained(str(save))
    start = time.perf_counter()
    pred = trainer.predict(encode(test))
    infer = len(test) / (time.perf_counter() - start)
    acc = float((np.argmax(pred.predictions, -1) == pred.label_ids).mean())
    from sklearn.metrics import f1_score

    macro = float(f1_score(pred.label_ids, np.argmax(pred.predictions, -1), average="macro"))
    del trainer, model
    return {"system": f"HF Trainer ({epochs:g} ep)", "test_accuracy": round(acc, 4), "test_macro_f1": round(macro, 4),
            "train_seconds": round(out.metrics["train_runtime"], 1),
            "train_examples_per_s": round(len(train) * epochs / out.metrics["train_runtime"], 1),
            "wall_seconds": round(out.metrics["train_runtime"], 1), "inference_examples_per_s": round(infer, 1)}


def stepwise_run(name: str, train_path, dev_path, test_path, **options) -> dict:
    run, wall = timed_train("classify", f"classify_{name}", train_path, dev_path, test_path, **options)
    r = run.results
    return {"system": f"stepwise ({name})", "test_accuracy": round(r["test"]["accuracy"], 4),
            "test_macro_f1": round(r["test"]["macro_f1"], 4), "train_seconds": r["train"]["seconds"],
            "train_examples_per_s": r["train"]["examples_per_s"], "wall_seconds": wall,
            "inference_examples_per_s": r["inference"]["test_examples_per_s"], "steps": r["train"]["steps"],
            "mfu": r["train"]["mfu"], "peak_gflops_per_s": r["train"]["peak_gflops_per_s"],
            "dev_accuracy": round(r["dev"]["accuracy"], 4)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="hf,same,defaults", help="rows: hf, same, dense, frozen, before, defaults")
    parser.add_argument("--hf-epochs", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=HF_SETTINGS["seed"], help="seed of the stepwise rows")
    args = parser.parse_args()
    data = need(SHARED / "sst2")
    train, dev, test = data / "train.tsv", data / "dev.tsv", data / "test.tsv"
    rows = []
    parts = args.only.split(",")
    if "hf" in parts:
        rows.append(hf_trainer(train, test, args.hf_epochs))
    same = {**HF_SETTINGS, "seed": args.seed, "epochs": args.hf_epochs, "schedule": "linear", "clip": 1.0,
            "max_length": 256, "patience": None}
    if "same" in parts:
        rows.append(stepwise_run("same settings", train, dev, test, **same))
    rows += lever_rows(parts, lambda name, **change: stepwise_run(name, train, dev, test, **same, **change))
    if "defaults" in parts:
        rows.append(stepwise_run("recommended defaults", train, dev, test))
    extra = {}
    if "hf" in parts and "same" in parts:
        hf, sw = rows[0], rows[1]
        extra = {"train_speed_ratio": round(sw["train_examples_per_s"] / hf["train_examples_per_s"], 2),
                 "inference_speed_ratio": round(sw["inference_examples_per_s"] / hf["inference_examples_per_s"], 2),
                 "accuracy_delta": round(sw["test_accuracy"] - hf["test_accuracy"], 4)}
        print(f"ratios (stepwise same settings / HF Trainer): {extra}")
    name = "classify" + (f"_seed{args.seed}" if args.seed else "")
    emit(name, rows, ["system", "test_accuracy", "test_macro_f1", "train_seconds", "train_examples_per_s",
                      "wall_seconds", "inference_examples_per_s", "mfu"], extra)


if __name__ == "__main__":
    main()
