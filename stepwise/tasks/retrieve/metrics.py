"""Ranking scores for one relevant passage per query: Recall@k, MRR@10, nDCG@10 (as BEIR and MTEB report)."""

from __future__ import annotations

import numpy as np

METRICS = ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10")


def ranks(scores: np.ndarray, gold: list[int]) -> np.ndarray:
    """1-based rank of each query's gold passage among all (ties count against it: an honest lower bound)."""
    gold_scores = scores[np.arange(len(gold)), gold]
    return (scores >= gold_scores[:, None]).sum(axis=1)


def ranking_metrics(rank: np.ndarray) -> dict[str, float]:
    """The standard scores from the gold ranks; `n` is the number of queries."""
    rank = np.asarray(rank, dtype=np.float64)
    if rank.size == 0:
        return {**dict.fromkeys(METRICS, 0.0), "n": 0}
    top10 = rank <= 10
    return {"recall@1": float((rank <= 1).mean()), "recall@5": float((rank <= 5).mean()),
            "recall@10": float(top10.mean()), "mrr@10": float(np.where(top10, 1.0 / rank, 0.0).mean()),
            "ndcg@10": float(np.where(top10, 1.0 / np.log2(rank + 1), 0.0).mean()), "n": int(rank.size)}


def report_text(metrics: dict[str, float]) -> str:
    rows = [f"{name:>10}  {100 * metrics[name]:6.2f}" for name in METRICS]
    return "\n".join([f"{'metric':>10}  {'value':>6}", *rows, f"{'queries':>10}  {metrics['n']:6d}"]) + "\n"
