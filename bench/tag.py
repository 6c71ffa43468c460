"""CoNLL-2003: Hugging Face Trainer token classification vs stepwise with the same settings, then
stepwise's recommended tagging defaults (word-shape input, higher lr, more epochs).

Run: make bench-tag   (or .venv/bin/python bench/tag.py [--only hf,same,defaults])
All runs happen in this one process on the same data.
"""

from __future__ import annotations

import argparse
import time

from common import HF_SETTINGS, SHARED, emit, hf_training_args, need, timed_train

# Recommended tagging settings: the word-shape embedding gives back the casing the uncased MiniLM
# tokenizer throws away; a higher learning rate suits the small token head.
RECOMMENDED = {"casing": True, "lr": 1e-4, "epochs": 3, "batch_size": 32}


def hf_trainer(train_path, test_path, epochs: float) -> dict:
    import numpy as np
    from seqeval.metrics import f1_score, precision_score, recall_score
    from transformers import (
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        Trainer,
    )

    from stepwise.data.conll import read_conll
    from stepwise.model import default_model_dir
    from stepwise.tasks.tag import TagTask

    train, test = read_conll(train_path), read_conll(test_path)
    labels = TagTask.collect_labels(train)
    label_id = {t: i for i, t in enumerate(labels)}
    tok = AutoTokenizer.from_pretrained(default_model_dir())
    model = AutoModelForTokenClassification.from_pretrained(default_model_dir(), num_labels=len(labels))

    def encode(sentences):
        enc = tok([s.text for s in sentences], is_split_into_words=True, truncation=True, max_length=256)
        rows = []
        for i, s in enumerate(sentences):
            previous, row = None, []
            for word in enc.word_ids(i):  # label on the first sub-token only, as the reference setting says
                row.append(-100 if word is None or word == previous else label_id[s.label[word]])
                previous = word
            rows.append({"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
                         "labels": row})
        return rows

    args = hf_training_args("hf_tag", epochs)
    trainer = Trainer(model=model, args=args, train_dataset=encode(train),
                      data_collator=DataCollatorForTokenClassification(tok))
    out = trainer.train()
    test_rows = encode(test)
    start = time.perf_counter()
    pred = trainer.predict(test_rows)
    infer = len(test) / (time.perf_counter() - start)
    gold_tags, pred_tags = [], []
    for row, logits, s in zip(test_rows, pred.predictions, test):
        ids = np.argmax(logits[: len(row["labels"])], -1)
        tags = [labels[p] for p, g in zip(ids, row["labels"]) if g != -100]
        pred_tags.append(tags + ["O"] * (len(s.label) - len(tags)))
        gold_tags.append(s.label)
    return {"system": f"HF Trainer ({epochs:g} ep)", "test_f1": round(f1_score(gold_tags, pred_tags), 4),
            "test_precision": round(precision_score(gold_tags, pred_tags), 4),
            "test_recall": round(recall_score(gold_tags, pred_tags), 4),
            "train_seconds": round(out.metrics["train_runtime"], 1),
            "train_sentences_per_s": round(len(train) * epochs / out.metrics["train_runtime"], 1),
            "wall_seconds": round(out.metrics["train_runtime"], 1), "inference_sentences_per_s": round(infer, 1)}


def stepwise_run(name: str, train_path, dev_path, test_path, **options) -> dict:
    run, wall = timed_train("tag", f"tag_{name}", train_path, dev_path, test_path, **options)
    r = run.results
    return {"system": f"stepwise ({name})", "test_f1": round(r["test"]["f1"], 4),
            "test_precision": round(r["test"]["precision"], 4), "test_recall": round(r["test"]["recall"], 4),
            "dev_f1": round(r["dev"]["f1"], 4), "train_seconds": r["train"]["seconds"],
            "train_sentences_per_s": r["train"]["examples_per_s"], "wall_seconds": wall,
            "inference_sentences_per_s": r["inference"]["test_examples_per_s"], "steps": r["train"]["steps"],
            "mfu": r["train"]["mfu"], "peak_gflops_per_s": r["train"]["peak_gflops_per_s"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="hf,same,defaults")
    parser.add_argument("--hf-epochs", type=float, default=1.0)
    args = parser.parse_args()
    data = need(SHARED / "conll2003")
    train, dev, test = data / "train.txt", data / "valid.txt", data / "test.txt"
    parts = args.only.split(",")
    rows = []
    if "hf" in parts:
        rows.append(hf_trainer(train, test, args.hf_epochs))
    if "same" in parts:
        # Same hyperparameters and the same model as HF (no word-shape input); then the same in fp32 to show
        # what bf16 autocast costs in quality; then the same hyperparameters with stepwise's tagging model.
        same = {**HF_SETTINGS, "epochs": args.hf_epochs, "casing": False, "clip": 1.0, "patience": None}
        rows.append(stepwise_run("same settings", train, dev, test, **same))
        rows.append(stepwise_run("same settings, fp32", train, dev, test, **same, precision="fp32"))
        rows.append(stepwise_run("same settings + word shape", train, dev, test, **{**same, "casing": True}))
    if "random" in parts:
        # The same as the first "same settings" row but with random (not length-grouped) batches, to test
        # whether length grouping is what costs F1 at HF's settings.
        same = {**HF_SETTINGS, "epochs": args.hf_epochs, "casing": False, "clip": 1.0, "patience": None}
        rows.append(stepwise_run("same settings, random batches", train, dev, test, **same, group_by_length=False))
    if "defaults" in parts:
        rows.append(stepwise_run("recommended", train, dev, test, **RECOMMENDED))
    extra = {}
    if "hf" in parts and "same" in parts:
        hf, sw = rows[0], rows[1]
        extra = {"train_speed_ratio": round(sw["train_sentences_per_s"] / hf["train_sentences_per_s"], 2),
                 "inference_speed_ratio": round(sw["inference_sentences_per_s"] / hf["inference_sentences_per_s"], 2),
                 "f1_delta": round(float(sw["test_f1"] - hf["test_f1"]), 4)}
        print(f"ratios (stepwise same settings / HF Trainer): {extra}")
    name = "tag_random" if parts == ["random"] else "tag"
    emit(name, rows, ["system", "test_f1", "test_precision", "test_recall", "train_seconds", "train_sentences_per_s",
                       "wall_seconds", "inference_sentences_per_s", "mfu"], extra)


if __name__ == "__main__":
    main()
