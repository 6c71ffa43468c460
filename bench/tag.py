"""CoNLL-2003: Hugging Face Trainer token classification vs stepwise with the same settings, then
stepwise's recommended tagging defaults (word-shape input, higher lr, more epochs).

Run: make bench-tag   (or cd bench && ../.venv/bin/python tag.py [--only hf,same,token,fp32,random,shape,defaults]
                       [--pools 4,8] [--seed N] [--hf-epochs E])
All runs happen in this one process on the same data.
"""

from __future__ import annotations

import argparse
import time

from common import HF_SETTINGS, SHARED, emit, hf_training_args, lever_rows, need, timed_train

# Recommended tagging settings: the word-shape embedding gives back the casing the uncased MiniLM
# tokenizer throws away; a higher learning rate suits the small token head.
RECOMMENDED = {"casing": True, "lr": 1e-4, "epochs": 3, "batch_size": 32}


def hf_trainer(train_path, test_path, epochs: float, seed: int, save=None) -> dict:
    """HF Trainer on CoNLL; with `save`, the fine-tuned model and tokenizer are written there (bench/infer.py)."""
    import numpy as np
    from seqeval.metrics import f1_score, precision_score, recall_score
    from transformers import (
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        Trainer,
        set_seed,
    )

    from stepwise.modeldir import default_model_dir
    from stepwise.tasks.tag.conll import read_conll
    from stepwise.tasks.tag.task import TagTask

    train, test = read_conll(train_path), read_conll(test_path)
    labels = TagTask.collect_labels(train)
    label_id = {t: i for i, t in enumerate(labels)}
    tok = AutoTokenizer.from_pretrained(default_model_dir())
    set_seed(seed)  # the head's initialisation follows the seed too (Trainer seeds only after the model exists)
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

    args = hf_training_args("hf_tag", epochs, seed)
    trainer = Trainer(model=model, args=args, train_dataset=encode(train),
                      data_collator=DataCollatorForTokenClassification(tok))
    out = trainer.train()
    if save is not None:
        model.config.id2label = dict(enumerate(labels))
        model.config.label2id = label_id
        trainer.save_model(str(save))
        tok.save_pretrained(str(save))
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
    system = f"HF Trainer ({epochs:g} ep)" + (f", seed {seed}" if seed else "")
    return {"system": system, "test_f1": round(f1_score(gold_tags, pred_tags), 4),
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
    parser.add_argument("--only", default="hf,same,shape,defaults",
                        help="rows: hf, same, dense, frozen, before, token, fp32, random, shape, defaults")
    parser.add_argument("--hf-epochs", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=HF_SETTINGS["seed"], help="seed of every row (variance check)")
    parser.add_argument("--pools", default="", help="extra same-settings rows with these length-grouping pools, "
                        "e.g. 4,8,16 (batches per length-sorted pool; the default pool is 50)")
    args = parser.parse_args()
    data = need(SHARED / "conll2003")
    train, dev, test = data / "train.txt", data / "valid.txt", data / "test.txt"
    pools = [int(p) for p in args.pools.split(",") if p]
    parts = args.only.split(",") + [f"pool{p}" for p in pools]
    rows = []
    if "hf" in parts:
        rows.append(hf_trainer(train, test, args.hf_epochs, args.seed))
    # Same hyperparameters and the same model as HF (no word-shape input): with stepwise's default loss (mean
    # per batch), with the token-weighted loss (every token weighs alike, as in HF's random batches), in
    # fp32 (what bf16 autocast costs in quality), with random batches, and with stepwise's word-shape input.
    same = {**HF_SETTINGS, "seed": args.seed, "epochs": args.hf_epochs, "casing": False, "clip": 1.0, "patience": None}
    variants = {"same": ("same settings", {}),
                "token": ("same settings, token-weighted loss", {"loss_weighting": "token"}),
                "fp32": ("same settings, fp32", {"precision": "fp32"}),
                "random": ("same settings, random batches", {"group_by_length": False}),
                "shape": ("same settings + word shape", {"casing": True}),
                **{f"pool{p}": (f"same settings, pool {p}", {"group_pool": p}) for p in pools}}
    for part, (name, change) in variants.items():
        if part in parts:
            rows.append(stepwise_run(name, train, dev, test, **{**same, **change}))
    rows += lever_rows(parts, lambda name, **change: stepwise_run(name, train, dev, test, **same, **change))
    if "defaults" in parts:
        rows.append(stepwise_run("recommended", train, dev, test, **RECOMMENDED))
    if "hf" in parts:  # every stepwise row against HF Trainer from this same process
        hf = rows[0]
        for sw in rows[1:]:
            sw["train_speed_vs_hf"] = round(sw["train_sentences_per_s"] / hf["train_sentences_per_s"], 2)
            sw["inference_speed_vs_hf"] = round(sw["inference_sentences_per_s"] / hf["inference_sentences_per_s"], 2)
            sw["f1_vs_hf_points"] = round(100 * (sw["test_f1"] - hf["test_f1"]), 2)
    name = ("tag" if "hf" in parts else "tag_" + "_".join(parts)) + (f"_seed{args.seed}" if args.seed else "")
    emit(name, rows, ["system", "test_f1", "f1_vs_hf_points", "test_precision", "test_recall", "train_seconds",
                      "train_sentences_per_s", "train_speed_vs_hf", "wall_seconds", "inference_sentences_per_s",
                      "inference_speed_vs_hf", "mfu"])


if __name__ == "__main__":
    main()
