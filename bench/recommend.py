"""Next-item recommendation on MovieLens-100K (issue 33 item 6): every row ranks the whole catalogue.

Run: make bench-recommend   (or cd bench && ../.venv/bin/python recommend.py [--only popular,als] [--seeds 0,1,2])
All rows run in this one process on one split (leave-last-out by timestamp, `--cold-fraction` of the items
held out of training): each row is a function `f(bench, seed) -> Result` in ROWS (scores for every test user
over all items, train seconds, optionally the p50 of one recommend call); `evaluate` scores every row the same
way — full ranking, the user's earlier items excluded, HR@10 / NDCG@10 / MRR / coverage@10 on all test users
and HR@10 / NDCG@10 on the users whose test item is cold. Rows marked `@seeded` run once per seed.

Add a model: write `def my_row(bench, seed) -> Result` (decorated with recommend_anchors.seeded if it is seeded)
and append it to ROWS.
Data: ../shared/data/ml100k (MovieLens 100K, GroupLens; read in place, never copied).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

from common import SHARED, cpu_flags, emit, need, table
from recommend_anchors import (
    Bench,
    Result,
    evaluate,
    implicit_als,
    implicit_bpr,
    item_knn,
    load,
    most_popular,
    sasrec,
    tfidf_content,
)
from recommend_stepwise import ROWS as STEPWISE_ROWS

from stepwise.threads import others_load, sample

ROWS: list[Callable[[Bench, int], Result]] = [
    most_popular,
    item_knn,
    implicit_als,
    implicit_bpr,
    tfidf_content,
    sasrec,
    *STEPWISE_ROWS,
]

METRICS = ("HR@10", "NDCG@10", "MRR", "cov@10", "cold HR@10", "cold NDCG@10")
KEYS = {"HR@10": "hr@10", "NDCG@10": "ndcg@10", "MRR": "mrr", "cov@10": "coverage@10", "cold HR@10": "cold hr@10",
        "cold NDCG@10": "cold ndcg@10"}
COLUMNS = ["row", "seed", "train s", *METRICS, "p50 ms", "others"]
SUMMARY = ["row", "seeds", "train s", *METRICS]

def run_row(bench: Bench, row: Callable[[Bench, int], Result], seed: int | None) -> dict:
    before = sample()
    result = row(bench, 0 if seed is None else seed)
    after = sample()
    metrics = evaluate(bench, result.scores)
    out = {"row": result.name, "key": row.__name__, "seed": "-" if seed is None else seed,
           "train s": result.train_seconds, "p50 ms": result.p50_ms,
           **{name: metrics.get(KEYS[name]) for name in METRICS}}
    # cores' worth of CPU other processes took while this row trained (0 on a quiet host)
    out["others"] = round(others_load(before, after), 2) if before and after else None
    return out


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def shown(row: dict) -> dict:
    out = {**row, **{name: _pct(row[name]) for name in METRICS}}
    out["train s"] = "-" if row["train s"] is None else f"{row['train s']:.2f}"
    out["p50 ms"] = "-" if row["p50 ms"] is None else f"{row['p50 ms']:.1f}"
    return out


def summary(rows: list[dict]) -> list[dict]:
    """Mean ± standard deviation over seeds, one line per row."""
    out = []
    for key in dict.fromkeys(r["key"] for r in rows):
        group = [r for r in rows if r["key"] == key]
        line = {"row": group[0]["row"], "seeds": len(group)}
        for name in ("train s", *METRICS):
            values = [r[name] for r in group if r[name] is not None]
            scale = 1 if name == "train s" else 100
            if not values:
                line[name] = "-"
            elif len(values) == 1:
                line[name] = f"{scale * values[0]:.2f}"
            else:
                line[name] = f"{scale * statistics.mean(values):.2f} ± {scale * statistics.stdev(values):.2f}"
        out.append(line)
    return out


def main() -> None:
    names = [row.__name__ for row in ROWS]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(names), help=f"rows to run, comma-separated ({','.join(names)})")
    ap.add_argument("--seeds", default="0,1,2", help="seeds for the seeded rows, comma-separated")
    ap.add_argument("--cold-fraction", type=float, default=0.1, help="share of the catalogue held out of training")
    ap.add_argument("--split-seed", type=int, default=0, help="which items are cold")
    ap.add_argument("--ties", choices=("file", "item"), default="file",
                    help="order of a user's interactions with the same timestamp: the file's (stepwise's split) or "
                         "by item id (the order that reproduces the team's orientation numbers)")
    ap.add_argument("--min-rating", type=float, default=None)
    args = ap.parse_args()
    unknown = set(args.only.split(",")) - set(names)
    if unknown:
        ap.error(f"unknown rows {sorted(unknown)}: choose from {names}")

    bench = load(need(SHARED / "ml100k"), cold_fraction=args.cold_fraction, seed=args.split_seed,
                 min_rating=args.min_rating, ties=args.ties)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for row in ROWS:
        if row.__name__ not in args.only.split(","):
            continue
        for seed in seeds if getattr(row, "seeded", False) else [None]:
            out = run_row(bench, row, seed)
            print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}, flush=True)
            rows.append(out)
    split = bench.split
    print(f"\n{len(bench.users)} test users, {len(split.items)} items ({len(split.cold_items)} cold, "
          f"{len(bench.cold_rows)} users whose test item is cold); ties: {args.ties}; skipped: {bench.read_skipped}; "
          f"CPU flags: {cpu_flags()}; `others`: cores' worth of CPU other processes used during the row\n")
    emit("recommend", [shown(r) for r in rows], COLUMNS,
         extra={"raw": rows, "summary": summary(rows), "ties": args.ties, "cold_fraction": args.cold_fraction,
                "split_seed": args.split_seed, "test_users": len(bench.users), "cold_users": int(bench.cold_rows.size),
                "skipped": bench.read_skipped, "cpu_flags": cpu_flags()})
    print("\nmean ± sd over seeds\n" + table(summary(rows), SUMMARY))


if __name__ == "__main__":
    main()
