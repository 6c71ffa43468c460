"""The anchors of bench/answer.py (issue 32 item 7): what users pick today for FAQ answer retrieval, measured
beside stepwise in one process on the same data.

Every scorer returns a [queries x pool] score matrix; every ranking score comes from stepwise's own
`ranks` + `ranking_metrics` so that the anchors and the stepwise rows are scored by one function.

    faq = load_faq(SHARED)                          # pool + (question, gold pool index, category) per split
    texts = [p["text"] for p in faq["pool"]]
    questions = [q for q, _, _ in faq["test"]]
    scores = bm25(texts, questions)                 # or frozen_minilm(texts, questions)
    path, seconds = st_finetune([(q, texts[g]) for q, g, _ in faq["train"]], out_dir=...)
    scores = st_scores(path, texts, questions)
    metrics = retrieval_metrics(scores, [g for _, g, _ in faq["test"]])
    lat = latency(st_encoder(path), questions, st_encoder(path)(texts))
    auroc = oos_auroc(scores.max(1), oos_scores.max(1))
    cal = calibrate(dev_in_max, dev_in_correct, dev_oos_max, 0.95)

Bench-only dependencies: requirements-bench.txt (sentence-transformers, datasets, bm25s, PyStemmer).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from stepwise.tasks.retrieve.metrics import ranking_metrics, ranks

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SPLITS = ("train", "dev", "test")


# ---------------------------------------------------------------------------------------------------- data


def _jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_lines(path: str | Path) -> list[str]:
    """A query file, one query a line (blank lines skipped)."""
    return [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def load_faq(shared_dir: str | Path) -> dict:
    """`shared_dir/faq_zaragoza/`: {"pool": [{"id", "category", "text"}] (all 503 answers, answers.jsonl order),
    "train"/"dev"/"test": [(question, gold pool index, category)], "oos_dev": [general out-of-scope questions]}.
    `shared_dir` is the shared data folder (bench.common.SHARED) or the faq_zaragoza folder itself."""
    root = Path(shared_dir)
    if not (root / "answers.jsonl").exists():
        root = root / "faq_zaragoza"
    pool = [{"id": r["id"], "category": r["category"], "text": r["answer"]} for r in _jsonl(root / "answers.jsonl")]
    index = {p["id"]: i for i, p in enumerate(pool)}
    if len(index) != len(pool):
        raise ValueError(f"{root / 'answers.jsonl'}: duplicate answer ids")
    out: dict = {"pool": pool}
    for split in SPLITS:
        rows = []
        for r in _jsonl(root / f"{split}.jsonl"):
            gold = index[r["id"]]
            if pool[gold]["text"] != r["answer"]:
                raise ValueError(f"{split}.jsonl {r['id']}: answer differs from answers.jsonl")
            rows.append((r["question"], gold, r["category"]))
        out[split] = rows
    out["oos_dev"] = read_lines(root / "oos_dev.txt")
    return out


def retrieval_metrics(scores: np.ndarray, gold: list[int]) -> dict[str, float]:
    """R@1/5/10, MRR@10, nDCG@10 and n from a [queries x pool] score matrix (stepwise's own scoring)."""
    return ranking_metrics(ranks(np.asarray(scores), list(gold)))


def category_accuracy(scores: np.ndarray, pool: list[dict], categories: list[str]) -> float:
    """Share of queries whose top-1 answer is in the question's category (intent read off the retriever)."""
    top = np.asarray(scores).argmax(axis=1)
    return float(np.mean([pool[i]["category"] == c for i, c in zip(top, categories)]))


# ---------------------------------------------------------------------------------------------------- BM25


def bm25(pool_texts: list[str], queries: list[str], *, stem: bool = True) -> np.ndarray:
    """BM25 (bm25s defaults: Lucene variant, k1 1.5, b 0.75) with bm25s's English stopwords and, when `stem`, the
    Snowball English stemmer from PyStemmer (a compiled wheel, nothing downloaded).

    bm25s rather than rank-bm25: it scores from a precomputed sparse matrix (one sparse row sum per query)
    where rank-bm25 loops over every document in Python per query; same formula, ~10-500x faster, which matters
    for the latency columns. Query tokens absent from the pool contribute nothing (as in rank-bm25)."""
    import bm25s

    stemmer = None
    if stem:
        import Stemmer

        stemmer = Stemmer.Stemmer("english").stemWords
    retriever = _bm25_index(pool_texts, stemmer)
    return _bm25_scores(retriever, queries, stemmer, len(pool_texts), bm25s)


def _bm25_index(pool_texts: list[str], stemmer):
    import bm25s

    tokens = bm25s.tokenize(pool_texts, stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False)
    retriever = bm25s.BM25()
    retriever.index(tokens, show_progress=False)
    return retriever


def _bm25_scores(retriever, queries: list[str], stemmer, n_pool: int, bm25s) -> np.ndarray:
    tokens = bm25s.tokenize(list(queries), stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False)
    vocab = retriever.vocab_dict
    out = np.zeros((len(queries), n_pool), dtype=np.float32)
    for i, toks in enumerate(tokens):
        known = [t for t in toks if t in vocab]
        if known:
            out[i] = retriever.get_scores(known)
    return out


def bm25_searcher(pool_texts: list[str], *, stem: bool = True) -> Callable[[list[str]], np.ndarray]:
    """queries → [queries x pool] BM25 scores against an index built once (for `latency_of`)."""
    import bm25s

    stemmer = None
    if stem:
        import Stemmer

        stemmer = Stemmer.Stemmer("english").stemWords
    retriever = _bm25_index(pool_texts, stemmer)
    return lambda queries: _bm25_scores(retriever, queries, stemmer, len(pool_texts), bm25s)


# ---------------------------------------------------------------------------------------------------- dense


def _st_model(path: str):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device="cpu")


def st_encoder(path: str | None = None, *, batch_size: int = 64) -> Callable[[list[str]], np.ndarray]:
    """texts → unit float32 vectors with a sentence-transformers model (default: the bundled all-MiniLM-L6-v2:
    Transformer → mean pooling over the attention mask → L2 normalisation, max 256 tokens, as its modules.json
    says)."""
    from stepwise.modeldir import default_model_dir

    model = _st_model(path or default_model_dir())

    def encode(texts: list[str]) -> np.ndarray:
        return model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True,
                            normalize_embeddings=True, show_progress_bar=False).astype(np.float32)

    return encode


def st_scores(path: str | None, pool_texts: list[str], queries: list[str]) -> np.ndarray:
    """Cosine (= inner product of unit vectors) [queries x pool] with a sentence-transformers model."""
    encode = st_encoder(path)
    return encode(queries) @ encode(pool_texts).T


def frozen_minilm(pool_texts: list[str], queries: list[str]) -> np.ndarray:
    """The bundled all-MiniLM-L6-v2 as shipped, mean-pooled and normalised by sentence-transformers itself."""
    return st_scores(None, pool_texts, queries)


def st_finetune(train_pairs: list[tuple[str, str]], epochs: int = 3, batch_size: int = 32, seed: int = 0,
                out_dir: str | Path = "out/st_mnrl") -> tuple[str, float]:
    """sentence-transformers' recommended recipe (v3+ SentenceTransformerTrainer) on the bundled model with
    MultipleNegativesRankingLoss at its defaults (scale 20, cosine, in-batch negatives) and the trainer's defaults
    (AdamW lr 5e-5, linear decay, no warmup, default batch sampler); CPU, no evaluation or checkpoints during
    training. Returns (saved model path, seconds of `trainer.train()` alone)."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from stepwise.modeldir import default_model_dir

    out_dir = Path(out_dir)
    model = _st_model(default_model_dir())
    data = Dataset.from_dict({"anchor": [q for q, _ in train_pairs], "positive": [p for _, p in train_pairs]})
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out_dir / "trainer"), num_train_epochs=epochs, per_device_train_batch_size=batch_size,
        seed=seed, data_seed=seed, eval_strategy="no", save_strategy="no", report_to="none", use_cpu=True,
        disable_tqdm=True, logging_strategy="no")
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=data,
                                         loss=MultipleNegativesRankingLoss(model))
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    path = out_dir / "model"
    model.save(str(path))
    return str(path), seconds


# ---------------------------------------------------------------------------------------------------- latency


def latency_of(search: Callable[[list[str]], np.ndarray], queries: list[str], *, k: int = 10,
               n_single: int = 100, warmup: int = 5) -> dict[str, float]:
    """`search(queries)` → [queries x pool] scores; each call timed together with the top-k selection.
    p50/p90 ms at batch 1 over the first `n_single` queries, queries/s at batch 32 over all of them."""

    def run(batch: list[str]) -> None:
        scores = search(batch)
        kk = min(k, scores.shape[1])
        top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        np.take_along_axis(scores, top, axis=1).argsort(axis=1)

    for q in queries[:warmup]:
        run([q])
    single = []
    for q in queries[:n_single]:
        start = time.perf_counter()
        run([q])
        single.append(1000 * (time.perf_counter() - start))
    run(queries[:32])
    start = time.perf_counter()
    for i in range(0, len(queries), 32):
        run(queries[i:i + 32])
    qps = len(queries) / (time.perf_counter() - start)
    return {"p50_ms": statistics.median(single), "p90_ms": float(np.percentile(single, 90)), "qps_b32": qps}


def latency(encode_fn: Callable[[list[str]], np.ndarray], queries: list[str], pool_vectors: np.ndarray,
            *, k: int = 10) -> dict[str, float]:
    """Dense retrieval latency: query encoding + exact inner product against `pool_vectors` + top-k.
    {"p50_ms", "p90_ms"} at batch 1 and {"qps_b32"} at batch 32."""
    pool_t = np.ascontiguousarray(np.asarray(pool_vectors, dtype=np.float32).T)
    return latency_of(lambda batch: encode_fn(batch) @ pool_t, queries, k=k)


# ---------------------------------------------------------------------------------------------------- out of scope


def oos_auroc(in_scores, oos_scores) -> float:
    """AUROC of telling in-scope from out-of-scope queries by a confidence score (higher = more in scope),
    e.g. each query's top-1 retrieval score."""
    from sklearn.metrics import roc_auc_score

    in_scores, oos_scores = np.asarray(in_scores, float), np.asarray(oos_scores, float)
    labels = np.r_[np.ones(len(in_scores)), np.zeros(len(oos_scores))]
    return float(roc_auc_score(labels, np.r_[in_scores, oos_scores]))


def abstention(t: float, in_scores, in_correct, oos_scores) -> dict[str, float]:
    """What abstaining on every query scoring below `t` does: abstention precision (share of the abstained that
    are out of scope), OOS recall (share of out-of-scope abstained), in-scope R@1 before and after (an abstained
    in-scope query counts as a miss), share of in-scope queries abstained."""
    in_scores, oos_scores = np.asarray(in_scores, float), np.asarray(oos_scores, float)
    in_correct = np.asarray(in_correct, bool)
    in_abst, oos_abst = in_scores < t, oos_scores < t
    n_abst = int(in_abst.sum() + oos_abst.sum())
    return {"threshold": float(t),
            "abstain_precision": float(oos_abst.sum() / n_abst) if n_abst else 1.0,
            "oos_recall": float(oos_abst.mean()) if len(oos_scores) else 0.0,
            "in_abstained": float(in_abst.mean()) if len(in_scores) else 0.0,
            "r1_before": float(in_correct.mean()) if len(in_scores) else 0.0,
            "r1_after": float((in_correct & ~in_abst).mean()) if len(in_scores) else 0.0}


def calibrate(in_scores, in_correct, oos_scores, target_precision: float = 0.95) -> dict[str, float]:
    """The threshold t (abstain when score < t) whose abstention precision on this (dev) set reaches
    `target_precision` with the largest OOS recall (ties: the lower t, fewer in-scope abstained). Candidates sit
    midway between consecutive distinct scores. Returns `abstention(t, ...)` plus "reached"; when no t reaches the
    target, t = -inf (never abstain) and reached = False."""
    in_scores, oos_scores = np.asarray(in_scores, float), np.asarray(oos_scores, float)
    values = np.unique(np.r_[in_scores, oos_scores])
    candidates = np.r_[(values[:-1] + values[1:]) / 2, values[-1] + 1.0] if len(values) else np.array([])
    best, best_recall = -np.inf, -1.0
    for t in candidates:
        a = abstention(t, in_scores, in_correct, oos_scores)
        if a["abstain_precision"] >= target_precision and a["oos_recall"] > best_recall:
            best, best_recall = t, a["oos_recall"]
    return {**abstention(best, in_scores, in_correct, oos_scores), "target_precision": target_precision,
            "reached": bool(np.isfinite(best))}
