"""Answer retrieval on the Zaragoza construction FAQ (issue 32 item 7): test questions against all 503 answers.

Run: make bench-answer   (or cd bench && ../.venv/bin/python answer.py [--only bm25,frozen,st] [--seeds 0,1,2])
All rows run in this one process on the same data. Each row yields a scorer (queries → [queries x pool] scores,
the pool already indexed) and its training seconds; `evaluate` measures everything else the same way for all:
ranking on test, category of the top-1 answer, latency (scoring + top-10, batch 1 and 32), out-of-scope AUROC of
the top-1 score on the general set (faq_zaragoza/oos_dev.txt) and on our near-domain test set
(bench/data/faq_near_oos_test.txt), and abstention at the threshold calibrated on dev (dev questions +
bench/data/faq_near_oos_dev.txt) for the target abstention precision.

Data: faq_zaragoza (Zaragoza AB, DOI 10.5281/zenodo.19630803, CC BY 4.0); oos_dev.txt from chatterbot-corpus (BSD).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
from answer_anchors import (
    abstention,
    bm25_searcher,
    calibrate,
    category_accuracy,
    latency_of,
    load_faq,
    oos_auroc,
    read_lines,
    retrieval_metrics,
    st_encoder,
    st_finetune,
)
from common import OUT, SHARED, cpu_flags, emit, need

from stepwise.threads import others_load, sample

HERE = Path(__file__).resolve().parent
NEAR_DEV = HERE / "data" / "faq_near_oos_dev.txt"
NEAR_TEST = HERE / "data" / "faq_near_oos_test.txt"
EPOCHS, BATCH = 3, 32

Scorer = Callable[[list[str]], np.ndarray]


def dense_scorer(encode: Callable[[list[str]], np.ndarray], pool_texts: list[str]) -> Scorer:
    """Pool encoded once; a query batch → its vectors @ pool vectors (unit vectors: cosine)."""
    pool_t = np.ascontiguousarray(encode(pool_texts).T)
    return lambda queries: encode(queries) @ pool_t


# ------------------------------------------------------------------------------------------ rows
# Each row function: (ctx, seed) → (name, scorer, train seconds or None). Add the stepwise rows to ROWS below.


def row_bm25(ctx: dict, seed: int):
    return "BM25 (bm25s, Snowball stems)", bm25_searcher(ctx["texts"]), None


def row_bm25_nostem(ctx: dict, seed: int):
    return "BM25 (bm25s, no stemming)", bm25_searcher(ctx["texts"], stem=False), None


def row_frozen(ctx: dict, seed: int):
    return "frozen all-MiniLM-L6-v2", dense_scorer(st_encoder(), ctx["texts"]), None


def row_st(ctx: dict, seed: int):
    pairs = [(q, ctx["texts"][g]) for q, g, _ in ctx["faq"]["train"]]
    path, seconds = st_finetune(pairs, epochs=EPOCHS, batch_size=BATCH, seed=seed, out_dir=OUT / f"answer_st_s{seed}")
    return f"sentence-transformers MNRL {EPOCHS} ep b{BATCH}", dense_scorer(st_encoder(path), ctx["texts"]), seconds


def _stepwise_run(ctx: dict, seed: int, **options) -> tuple[Path, float]:
    """`stepwise train --task retrieve` on the FAQ's train pairs (dev for early stopping, all 503 answers as the
    pool); seconds = the training loop including its dev evaluations (what early stopping costs)."""
    import stepwise

    root = SHARED / "faq_zaragoza"
    out = OUT / f"answer_stepwise_s{seed}{''.join(f'_{k}{v}' for k, v in sorted(options.items()))}"
    opts = {**ctx["stepwise_options"], **options}
    run = stepwise.train(task="retrieve", train=str(root / "train.jsonl"), dev=str(root / "dev.jsonl"),
                         test=str(root / "test.jsonl"), pool=str(root / "answers.jsonl"), out=str(out), seed=seed,
                         quiet=True, overwrite=True, **opts)
    ctx.setdefault("runs", {})[seed] = out
    return out, run.results["train"]["seconds"] + run.results["train"]["eval_seconds"]


def _encoder_scorer(path: Path, texts: list[str], threads: int | None = None) -> Scorer:
    from stepwise.tasks.retrieve.encoder import load_encoder

    embedder, _ = load_encoder(path, threads=threads)
    return dense_scorer(embedder.embed, texts)


def row_stepwise(ctx: dict, seed: int):
    path, seconds = _stepwise_run(ctx, seed)
    return f"stepwise bi-encoder ({ctx['stepwise_label']})", _encoder_scorer(path, ctx["texts"]), seconds


def row_int8(ctx: dict, seed: int):
    """The same run exported to ONNX int8: latency and quality of the deployable encoder."""
    from stepwise.recipes.export import export

    run = ctx.get("runs", {}).get(seed) or _stepwise_run(ctx, seed)[0]
    out = OUT / f"answer_stepwise_s{seed}_int8"
    export(run, out=out, int8=True)
    return "stepwise bi-encoder, ONNX int8", _encoder_scorer(out, ctx["texts"]), None


def row_rerank(ctx: dict, seed: int):
    """Step 2: a cross-encoder (text-pair classifier) trained on the retriever's own near misses over the
    train pairs, rescoring the top RERANK_K; the rest keep their order below them."""
    import stepwise
    from stepwise.tasks.retrieve.answer import relevant_column
    from stepwise.tasks.retrieve.mine import mine

    root = SHARED / "faq_zaragoza"
    run = ctx.get("runs", {}).get(seed) or _stepwise_run(ctx, seed)[0]
    tick = __import__("time").perf_counter()
    files = {}
    for split in ("train", "dev"):
        files[split] = OUT / f"answer_rerank_s{seed}_{split}.jsonl"
        # negatives from the split's own answers, not the whole pool: with the pool, answers never relevant in
        # training are the negatives, and the reranker learns which answers were ever right, not whether this
        # one answers this query (it then put held-out gold answers last: R@1 3-17%)
        mine(run, pairs=root / f"{split}.jsonl", out=files[split], negatives=ctx["rerank_negatives"])
    start = {"model": str(Path(run) / "model")} if ctx["rerank_from_retriever"] else {}
    ce = stepwise.train(task="classify", train=str(files["train"]), dev=str(files["dev"]), pair_column="text_pair",
                        out=str(OUT / f"answer_rerank_s{seed}"), seed=seed, quiet=True, overwrite=True,
                        **ctx["rerank_options"], **start)
    seconds = __import__("time").perf_counter() - tick
    predictor = ce.load()
    column = relevant_column(predictor.labels, ce.path)
    first = _encoder_scorer(run, ctx["texts"])
    texts, k = ctx["texts"], ctx["rerank_k"]

    def scorer(queries: list[str]) -> np.ndarray:
        from stepwise.example import Example

        scores = first(queries)
        top = np.argsort(-scores, axis=1)[:, :k]
        pairs = [Example(q, None, i, texts[j]) for i, q in enumerate(queries) for j in top[i]]
        probs = np.asarray(predictor.predict_proba(pairs))[:, column].reshape(top.shape)
        out = scores - 2.0  # below every reranked candidate (cosines are ≥ -1)
        np.put_along_axis(out, top, probs, axis=1)
        return out

    return f"stepwise bi-encoder + rerank top-{k}", scorer, seconds


ROWS: dict[str, Callable] = {
    "bm25": row_bm25,
    "bm25-nostem": row_bm25_nostem,
    "frozen": row_frozen,
    "st": row_st,
    "stepwise": row_stepwise,
    "int8": row_int8,
    "rerank": row_rerank,
}
SEEDED = {"st", "stepwise", "int8", "rerank"}  # rows trained per seed (the others are deterministic: run once)


# ------------------------------------------------------------------------------------------ evaluation


def evaluate(ctx: dict, scorer: Scorer, target: float) -> dict:
    faq = ctx["faq"]
    q_test, g_test, c_test = map(list, zip(*faq["test"]))
    q_dev, g_dev, _ = map(list, zip(*faq["dev"]))
    s_test, s_dev = scorer(q_test), scorer(q_dev)
    m = retrieval_metrics(s_test, g_test)
    top_test, top_dev = s_test.max(1), s_dev.max(1)
    ok_test = s_test.argmax(1) == np.asarray(g_test)
    ok_dev = s_dev.argmax(1) == np.asarray(g_dev)
    general = scorer(faq["oos_dev"]).max(1)
    near_dev, near_test = scorer(ctx["near_dev"]).max(1), scorer(ctx["near_test"]).max(1)
    cal = calibrate(top_dev, ok_dev, near_dev, target)
    at_t = abstention(cal["threshold"], top_test, ok_test, near_test)
    lat = latency_of(scorer, q_test)
    return {"R@1": m["recall@1"], "R@5": m["recall@5"], "R@10": m["recall@10"], "MRR@10": m["mrr@10"],
            "nDCG@10": m["ndcg@10"], "cat acc": category_accuracy(s_test, faq["pool"], c_test),
            "p50 ms": lat["p50_ms"], "q/s b32": lat["qps_b32"],
            "AUROC general": oos_auroc(top_test, general), "AUROC near": oos_auroc(top_test, near_test),
            "threshold": cal["threshold"], "calibrated": cal["reached"], "dev abst prec": cal["abstain_precision"],
            "near OOS recall": at_t["oos_recall"], "abst prec": at_t["abstain_precision"],
            "R@1 after abst": at_t["r1_after"], "general abstained": float((general < cal["threshold"]).mean())}


PCT = ("R@1", "R@5", "R@10", "MRR@10", "nDCG@10", "cat acc", "AUROC general", "AUROC near", "near OOS recall",
       "abst prec", "R@1 after abst", "general abstained")
COLUMNS = ["row", "seed", "R@1", "R@5", "MRR@10", "nDCG@10", "cat acc", "train s", "p50 ms", "q/s b32",
           "AUROC general", "AUROC near", "near OOS recall", "R@1 after abst", "general abstained",
           "others"]


def shown(row: dict) -> dict:
    out = dict(row)
    for k in PCT:
        out[k] = f"{100 * row[k]:.1f}"
    out["p50 ms"], out["q/s b32"] = f"{row['p50 ms']:.1f}", f"{row['q/s b32']:.0f}"
    out["train s"] = "-" if row["train s"] is None else f"{row['train s']:.1f}"
    return out


def _options(text: str) -> dict:
    """"epochs=3,lr=1e-4" → {"epochs": 3.0, "lr": 0.0001} (numbers where they parse)."""
    out = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        try:
            out[key] = int(value) if value.isdigit() else float(value)
        except ValueError:
            out[key] = value
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(ROWS), help=f"rows to run, comma-separated ({','.join(ROWS)})")
    ap.add_argument("--seeds", default="0", help="seeds for the trained rows, comma-separated")
    ap.add_argument("--target-precision", type=float, default=0.95)
    ap.add_argument("--stepwise", default="", help="stepwise retriever options, e.g. epochs=3,lr=1e-4 (default: "
                    "stepwise's defaults)")
    ap.add_argument("--rerank-k", type=int, default=10)
    ap.add_argument("--rerank-negatives", type=int, default=3)
    ap.add_argument("--rerank-epochs", type=float, default=2)
    ap.add_argument("--rerank-from-retriever", action="store_true",
                    help="start the cross-encoder from the trained retriever's encoder instead of the bundled MiniLM")
    args = ap.parse_args()
    import torch

    faq = load_faq(need(SHARED / "faq_zaragoza"))
    ctx = {"faq": faq, "texts": [p["text"] for p in faq["pool"]],
           "near_dev": read_lines(NEAR_DEV), "near_test": read_lines(NEAR_TEST),
           "stepwise_options": _options(args.stepwise), "stepwise_label": args.stepwise or "defaults",
           "rerank_k": args.rerank_k, "rerank_negatives": args.rerank_negatives,
           "rerank_options": {"epochs": args.rerank_epochs}, "rerank_from_retriever": args.rerank_from_retriever}
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for key in args.only.split(","):
        for seed in seeds if key in SEEDED else [None]:
            before = sample()
            name, scorer, seconds = ROWS[key](ctx, 0 if seed is None else seed)
            row = {"row": name, "seed": "-" if seed is None else seed, "train s": seconds,
                   **evaluate(ctx, scorer, args.target_precision)}
            after = sample()
            # cores' worth of CPU other processes took while this row trained and was timed (0 on a quiet host)
            row["others"] = round(others_load(before, after), 2) if before and after else None
            print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
            rows.append(row)
    print(f"\n{len(faq['test'])} test questions against {len(faq['pool'])} answers; general OOS "
          f"{len(faq['oos_dev'])}, near-domain OOS test {len(ctx['near_test'])} (threshold calibrated on "
          f"{len(faq['dev'])} dev questions + {len(ctx['near_dev'])} near-domain dev for abstention precision "
          f"{args.target_precision}); torch threads {torch.get_num_threads()}; CPU flags: {cpu_flags()}; "
          "`others`: cores' worth of CPU other processes used during the row\n")
    emit("answer", [shown(r) for r in rows], COLUMNS,
         extra={"raw": rows, "target_precision": args.target_precision, "torch_threads": torch.get_num_threads(),
                "cpu_flags": cpu_flags()})


if __name__ == "__main__":
    main()
