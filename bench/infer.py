"""Inference: the Hugging Face pipeline against stepwise on torch, ONNX, int8, distilled and pruned models.

Run: make bench-infer   (or cd bench && ../.venv/bin/python infer.py [--only sst2,conll] [--rounds 3]
     [--latency-n 300]; `--only refiners` exports two real CoNLL refiners and refines on ONNX Runtime)
Needs the runs of `make bench-classify` (SST-2 recommended defaults) and `make bench-tag` (CoNLL, stepwise's
tagger at HF's settings) under bench/out/; the HF pipeline models are fine-tuned once with HF Trainer (HF's
reference settings, 1 epoch) and cached in bench/out/hf_*_model. Everything else runs in this one process:
quality on the test set, examples/s at batch 32, p50/p99 latency at batch 1 (first N test examples), model
size on disk, and MFU of the batch-32 pass against the measured fp32 matmul peak. The batch-32 pass is timed
`--rounds` times per system, the systems interleaved, and the median kept. The SST-2 students are distilled
here once (3 of 6 layers): on the gold labels alone, and with a transfer set of unlabeled text
(`distill --unlabeled`: phrases and noisy copies of the training sentences, see `transfer_set`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from common import OUT, SHARED, emit, need

BATCH = 32


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file() and p.suffix in
               (".safetensors", ".onnx", ".bin", ".data"))


def percentiles(fn, items: list, n: int) -> tuple[float, float]:
    fn(items[:1])  # warm-up
    times = []
    for item in items[:n]:
        tick = time.perf_counter()
        fn([item])
        times.append(1000 * (time.perf_counter() - tick))
    return round(float(np.percentile(times, 50)), 2), round(float(np.percentile(times, 99)), 2)


def timed(fn, items: list):
    fn(items[:BATCH])  # warm-up
    tick = time.perf_counter()
    out = fn(items)
    return out, time.perf_counter() - tick


# --- the Hugging Face pipeline, as its docs tell a user to run it ----------------------------------------------
def hf_classifier(model_dir: Path, test) -> dict:
    from transformers import pipeline

    pipe = pipeline("text-classification", model=str(model_dir), device=-1)
    texts = [ex.text for ex in test]

    def run(batch):
        return pipe(batch, batch_size=BATCH, truncation=True)

    out, seconds = timed(run, texts)
    pred = [str(pipe.model.config.label2id[o["label"]]) for o in out]
    p50, p99 = percentiles(lambda b: pipe(b, truncation=True), texts, ARGS.latency_n)
    accuracy = float(np.mean([p == ex.label for p, ex in zip(pred, test)]))
    return {"system": "HF pipeline (HF Trainer model)", "quality": round(accuracy, 4),
            "examples_per_s": round(len(texts) / seconds, 1), "p50_ms": p50, "p99_ms": p99,
            "size_mb": round(dir_size(model_dir) / 1e6, 1), "_seconds": [seconds], "_n": len(texts),
            "_again": lambda: timed(run, texts)[1]}


def hf_tagger(model_dir: Path, test) -> dict:
    from seqeval.metrics import f1_score
    from transformers import pipeline

    pipe = pipeline("token-classification", model=str(model_dir), aggregation_strategy="first", device=-1)
    texts = [" ".join(ex.text) for ex in test]

    def run(batch):
        return pipe(batch, batch_size=BATCH)

    out, seconds = timed(run, texts)
    pred = [word_tags(ex.text, entities) for ex, entities in zip(test, out)]
    p50, p99 = percentiles(lambda b: pipe(b), texts, ARGS.latency_n)
    return {"system": "HF pipeline (HF Trainer model)", "quality": round(f1_score([ex.label for ex in test], pred), 4),
            "examples_per_s": round(len(texts) / seconds, 1), "p50_ms": p50, "p99_ms": p99,
            "size_mb": round(dir_size(model_dir) / 1e6, 1), "_seconds": [seconds], "_n": len(texts),
            "_again": lambda: timed(run, texts)[1]}


def word_tags(words: list[str], entities: list[dict]) -> list[str]:
    """The pipeline's character spans back onto the words of the space-joined sentence, as BIO tags."""
    starts, position = [], 0
    for word in words:
        starts.append(position)
        position += len(word) + 1
    tags = ["O"] * len(words)
    for entity in entities:
        covered = [i for i, s in enumerate(starts) if s < entity["end"] and s + len(words[i]) > entity["start"]]
        for k, i in enumerate(covered):
            tags[i] = ("B-" if k == 0 else "I-") + entity["entity_group"]
    return tags


# --- stepwise on any backend ------------------------------------------------------------------------------------
def stepwise_row(name: str, path: Path, test, source: Path, size_path: Path, **load_options) -> dict:
    """`source` is the run the model came from: its torch model gives the FLOPs for MFU."""
    import stepwise
    from stepwise.training.flops import matmul_peak, non_embedding_params, train_flops

    predictor = stepwise.load(path, batch_size=BATCH, **load_options)
    task = predictor.task
    probs, seconds = timed(predictor.probabilities, test)
    pred = [task.to_labels(p) for p in probs]
    quality = task.metrics([ex.label for ex in test], pred)[task.default_metric]
    p50, p99 = percentiles(predictor.predict, [ex.text for ex in test], ARGS.latency_n)
    model = stepwise.load(source, precision="fp32").model
    config = model.encoder.config
    lengths = [len(f["input_ids"]) for f in predictor.encode(test)]
    forward = train_flops(non_embedding_params(model), config.num_hidden_layers, config.hidden_size, lengths) / 3
    return {"system": name, "quality": round(quality, 4), "examples_per_s": round(len(test) / seconds, 1),
            "p50_ms": p50, "p99_ms": p99, "size_mb": round(dir_size(size_path) / 1e6, 1),
            "mfu": round(forward / seconds / matmul_peak("fp32"), 4), "_seconds": [seconds], "_n": len(test),
            "_forward": forward, "_again": lambda: timed(predictor.probabilities, test)[1]}


def more_rounds(rows: list[dict]) -> None:
    """Time every system's batch-32 pass `--rounds - 1` more times, system after system in each round, and keep
    each system's median: a slow spell of the host then falls on all systems alike, not on one row."""
    from stepwise.training.flops import matmul_peak

    for _ in range(ARGS.rounds - 1):
        for row in rows:
            row["_seconds"].append(row["_again"]())
    peak = matmul_peak("fp32")
    for row in rows:
        seconds = float(np.median(row["_seconds"]))
        row["examples_per_s"] = round(row["_n"] / seconds, 1)
        row["examples_per_s_rounds"] = [round(row["_n"] / t, 1) for t in row["_seconds"]]
        if "_forward" in row:
            row["mfu"] = round(row["_forward"] / seconds / peak, 4)


def dataset_rows(name: str, run: Path, dev: Path, test, hf_model: Path, hf_row, extra_runs: dict[str, Path]
                 ) -> list[dict]:
    """Every row for one data set; exports are gated on `dev`."""
    from stepwise.recipes.export import export

    rows = [hf_row(hf_model, test)]
    rows.append(stepwise_row("stepwise torch fp32", run, test, run, run / "model", precision="fp32"))
    for int8 in (False, True):
        out = OUT / f"infer_{name}_{'int8' if int8 else 'onnx'}"
        report = export(run, out=out, int8=int8, data=dev)
        row = stepwise_row(f"stepwise ONNX {'int8' if int8 else 'fp32'}", out, test, run, out)
        row["dev_parity"] = report["parity"]
        rows.append(row)
    for label, extra in extra_runs.items():
        out = OUT / f"{extra.name}_int8"
        export(extra, out=out, int8=True, data=dev)
        rows.append(stepwise_row(f"stepwise {label} + int8", out, test, extra, out))
    more_rounds(rows)
    hf = rows[0]
    for row in rows[1:]:
        row["vs_hf_batch32"] = round(row["examples_per_s"] / hf["examples_per_s"], 2)
        row["p50_vs_hf"] = round(row["p50_ms"] / hf["p50_ms"], 3)
        row["quality_vs_torch_points"] = round(100 * (row["quality"] - rows[1]["quality"]), 2)
    for row in rows:
        row["data"] = name
    return rows


def transfer_set(train: Path, out: Path, spans: int = 2, seed: int = 0) -> Path:
    """Unlabeled SST-2-like text for distillation: per training sentence, `spans` random contiguous phrases
    (30–80% of its words, like the treebank's phrases SST-2 was annotated on) and one copy with learner
    noise (stepwise.tasks.edit.noise at its default rates). The teacher labels them through its soft targets."""
    import random

    from stepwise.data.readers import read_examples
    from stepwise.tasks.edit.noise import make_pairs

    sentences = [str(ex.text) for ex in read_examples(train)]
    rng, texts = random.Random(seed), []
    for sentence in sentences:
        words = sentence.split()
        for _ in range(spans if len(words) >= 6 else 0):
            size = rng.randint(max(3, round(0.3 * len(words))), round(0.8 * len(words)))
            start = rng.randrange(len(words) - size + 1)
            texts.append(" ".join(words[start:start + size]))
    texts += [noisy for noisy, _ in make_pairs(sentences, seed=seed)[0]]
    out.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    print(f"transfer set: {len(texts)} unlabeled texts from {len(sentences)} training sentences -> {out}", flush=True)
    return out


def sst2() -> list[dict]:
    from classify import hf_trainer

    import stepwise
    from stepwise.data.readers import read_examples

    data = need(SHARED / "sst2")
    train, dev, test = data / "train.tsv", data / "dev.tsv", data / "test.tsv"
    run = need(OUT / "classify_recommended_defaults")
    hf_model = OUT / "hf_sst2_model"
    if not (hf_model / "config.json").exists():
        hf_trainer(train, test, 1.0, save=hf_model)
    common = {"train": str(train), "dev": str(dev), "test": str(test), "quiet": True}
    distilled, pruned = OUT / "infer_sst2_distilled", OUT / "infer_sst2_pruned"
    if not (distilled / "results.json").exists():
        # alpha 0.9 / T 2 / 3 epochs: measured against alpha 0.5 / 2 epochs (test −3.2 pt) and T 4 (docs)
        stepwise.distill(str(run), layers=3, out=str(distilled), epochs=3, alpha=0.9, temperature=2.0,
                         overwrite=True, **common)
    transfer = OUT / "infer_sst2_distilled_unlabeled"  # the same student, with a transfer set of unlabeled text
    if not (transfer / "results.json").exists():
        texts = transfer_set(train, OUT / "sst2_transfer.txt")
        stepwise.distill(str(run), layers=3, out=str(transfer), epochs=3, alpha=0.9, temperature=2.0,
                         unlabeled=str(texts), overwrite=True, **common)
    if not (pruned / "results.json").exists():
        stepwise.prune(str(run), ffn=0.5, out=str(pruned), epochs=1, overwrite=True, **common)
    return dataset_rows("sst2", run, dev, read_examples(test), hf_model, hf_classifier,
                        {"distilled 3 layers": distilled, "distilled 3 layers, transfer set": transfer,
                         "pruned FFN 50%": pruned})


def conll() -> list[dict]:
    from tag import hf_trainer

    from stepwise.tasks.tag.conll import read_conll

    data = need(SHARED / "conll2003")
    run = need(OUT / "tag_same_settings_+_word_shape")
    hf_model = OUT / "hf_conll_model"
    if not (hf_model / "config.json").exists():
        hf_trainer(data / "train.txt", data / "test.txt", 1.0, 0, save=hf_model)
    return dataset_rows("conll2003", run, data / "valid.txt", read_conll(data / "test.txt"), hf_model, hf_tagger, {})


def refiner_rows(name: str, run: Path, dev: Path, test: list, steps: int) -> list[dict]:
    """A real refiner exported (fp32 and int8, gated on `dev`) and refined for `steps` steps on ONNX Runtime:
    final-step agreement with torch per sentence and per tag on the test set, F1 of both, ms per sentence."""
    import stepwise
    from stepwise.deploy.parity import agreement
    from stepwise.predictor import PredictOptions
    from stepwise.recipes.export import export

    torch_predictor = stepwise.load(run, batch_size=BATCH, precision="fp32")
    task = torch_predictor.task
    gold = task.gold(test)

    def refined(predictor) -> tuple[list, float, float]:
        start = time.perf_counter()
        result = predictor.run(test, PredictOptions(steps=steps))
        seconds = time.perf_counter() - start
        f1 = task.metrics(gold, [task.ids_to_labels(p) for p in result.predictions])[task.default_metric]
        return result.predictions, f1, 1000 * seconds / len(test)

    reference, ref_f1, ref_ms = refined(torch_predictor)
    rows = [{"data": "conll2003", "refiner": name, "backend": "torch fp32", "T": steps, "test_f1": round(ref_f1, 4),
             "ms_per_sentence": round(ref_ms, 2)}]
    for int8 in (False, True):
        out = OUT / f"infer_{run.name}_{'int8' if int8 else 'onnx'}"
        report = export(run, out=out, int8=int8, data=dev)
        predictions, f1, ms = refined(stepwise.load(out, batch_size=BATCH))
        agree = agreement(reference, predictions)
        rows.append({"data": "conll2003", "refiner": name, "backend": f"ONNX {'int8' if int8 else 'fp32'}", "T": steps,
                     "test_f1": round(f1, 4), "ms_per_sentence": round(ms, 2),
                     "sentence_agreement": agree["example_agreement"], "tag_agreement": agree["label_agreement"],
                     "dev_gate_example_agreement": report["parity"]["example_agreement"],
                     "dev_gate_metric_torch": report["parity"]["metric_torch"],
                     "dev_gate_metric_onnx": report["parity"]["metric_onnx"]})
        print(rows[-1], flush=True)
    return rows


def refiners() -> list[dict]:
    """Three real CoNLL refiners: a 3-step refiner (previous tags as an input), trained here for one epoch if absent,
    the document-context refiner of `bench/refine.py --only conll-doc --fold-epochs 1` (2 steps), and the
    tagger with a document head of `bench/refine.py --only conll-doc-head` (seed 0, 2 steps)."""
    import stepwise
    from stepwise.data.readers import read_examples

    data = need(SHARED / "conll2003")
    refiner = OUT / "infer_conll_refiner"
    if not (refiner / "results.json").exists():
        stepwise.train(task="tag", train=str(data / "train.txt"), dev=str(data / "valid.txt"), out=str(refiner),
                       refine_steps=3, epochs=1, lr=1e-4, batch_size=32, quiet=True,
                       overwrite=True)
    test = read_examples(data / "test.txt", prefer="conll")  # documents numbered by their -DOCSTART- lines
    rows = refiner_rows("3-step refiner (1 epoch)", refiner, data / "valid.txt", test, 3)
    doc = OUT / "refine_doc_folds1" / "doc_context"
    if (doc / "results.json").exists():
        rows += refiner_rows("document-context refiner", doc, data / "valid.txt", test, 2)
    else:
        print(f"skipped the document-context refiner: {doc} is missing (bench/refine.py --only conll-doc "
              "--epochs 3 --fold-epochs 1 makes it)", flush=True)
    head = OUT / "refine_doc_head" / "seed0"
    if (head / "results.json").exists():
        rows += refiner_rows("tagger + document head", head, data / "valid.txt", test, 2)
    else:
        print(f"skipped the document head: {head} is missing (bench/refine.py --only conll-doc-head makes it)",
              flush=True)
    return rows


def main() -> None:
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="sst2,conll", help="sst2, conll, refiners (the last not by default)")
    parser.add_argument("--rounds", type=int, default=3, help="batch-32 timings per system, interleaved across "
                        "systems (median kept)")
    parser.add_argument("--latency-n", type=int, default=300, help="test examples timed one at a time")
    ARGS = parser.parse_args()
    if ARGS.only == "refiners":
        rows = refiners()
        emit("infer_refiners", rows, ["data", "refiner", "backend", "T", "test_f1", "ms_per_sentence",
                                      "sentence_agreement", "tag_agreement", "dev_gate_example_agreement",
                                      "dev_gate_metric_torch", "dev_gate_metric_onnx"])
        return
    rows = []
    if "sst2" in ARGS.only:
        rows += sst2()
    if "conll" in ARGS.only:
        rows += conll()
    emit("infer", [{k: v for k, v in r.items() if k != "dev_parity" and not k.startswith("_")} for r in rows],
         ["data", "system", "quality", "quality_vs_torch_points", "examples_per_s", "vs_hf_batch32", "p50_ms",
          "p99_ms", "p50_vs_hf", "size_mb", "mfu"],
         {"dev_parity": {f"{r['data']} {r['system']}": r["dev_parity"] for r in rows if "dev_parity" in r}})


ARGS: argparse.Namespace

if __name__ == "__main__":
    main()
