"""Where an index should switch from exact search to faiss HNSW (issue 32): exact vs HNSW per pool size.

Run: cd bench && ../.venv/bin/python index_size.py [--sizes 5000,20000,50000,100000,200000]
One process, the same vectors for both: for each pool size, the exact search stepwise uses (one matrix
product + argpartition, `Index.search`) and faiss's IndexHNSWFlat at stepwise's settings (M, efSearch), with
the query latency at batch 1 (p50 over 200 queries) and queries/s at batch 32, HNSW's recall@10 against the
exact top-10, and the HNSW build seconds (paid once per `stepwise index`, again on every `--add`).

The vectors (`--vectors`): `text` (default) embeds every sentence of ../shared/data (SST-2, CoNLL-2003,
finance tweets, JFLEG, the FAQ, movie titles; ~45k distinct texts) with the frozen bundled MiniLM, cached in
bench/out/; queries are 200 held-out texts. HNSW's recall depends on how clustered the vectors are, so real text
embeddings are what it is judged on. `synthetic`: 384-d unit vectors in 2,000 Gaussian clusters, for pools
larger than the text collection (latency only: its recall is far below real text's).
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import numpy as np
from common import OUT, SHARED, cpu_flags, emit, need

from stepwise.tasks.retrieve.data import Passage
from stepwise.tasks.retrieve.index import HNSW_EF_SEARCH, HNSW_M, Index

DIM, K = 384, 10


def texts() -> list[str]:
    """Every distinct sentence of the shared data sets (a pool of real text, not a benchmark of its own)."""
    import csv
    import json

    root, out = need(SHARED), []
    for split in ("train", "dev", "test"):
        with open(root / "sst2" / f"{split}.tsv", encoding="utf-8") as fh:
            out += [row[0] for row in csv.reader(fh, delimiter="\t")][1:]
    for split in ("train", "valid", "test"):
        words: list[str] = []
        for line in (root / "conll2003" / f"{split}.txt").read_text(encoding="utf-8").splitlines() + [""]:
            if line.strip() and not line.startswith("-DOCSTART-"):
                words.append(line.split()[0])
            elif words:
                out.append(" ".join(words))
                words = []
    for split in ("train", "valid"):
        with open(root / "twitter_fin" / f"{split}.csv", encoding="utf-8") as fh:
            out += [row[0] for row in csv.reader(fh)][1:]
    out += (root / "jfleg_dev" / "dev.src").read_text(encoding="utf-8").splitlines()
    for line in (root / "faq_zaragoza" / "answers.jsonl").read_text(encoding="utf-8").splitlines():
        out.append(json.loads(line)["answer"])
    with open(root / "ml100k" / "items.tsv", encoding="utf-8") as fh:
        out += [" ".join(row[1:]) for row in csv.reader(fh, delimiter="\t")][1:]
    return list(dict.fromkeys(t.strip() for t in out if len(t.split()) >= 3))


def text_vectors() -> np.ndarray:
    cache = OUT / "index_size_vectors.npy"
    if cache.exists():
        return np.load(cache)
    from answer_anchors import st_encoder

    vectors = st_encoder(batch_size=128)(texts())
    OUT.mkdir(parents=True, exist_ok=True)
    np.save(cache, vectors)
    return vectors


def vectors(n: int, rng: np.random.Generator) -> np.ndarray:
    centers = rng.standard_normal((2000, DIM)).astype(np.float32)
    x = centers[rng.integers(0, len(centers), n)] + 0.5 * rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def p50_ms(search, queries: np.ndarray) -> float:
    for q in queries[:10]:
        search(q[None])
    times = []
    for q in queries:
        tick = time.perf_counter()
        search(q[None])
        times.append(time.perf_counter() - tick)
    return 1000 * float(np.median(times))


def qps(search, queries: np.ndarray, batch: int = 32) -> float:
    tick = time.perf_counter()
    for i in range(0, len(queries), batch):
        search(queries[i:i + batch])
    return len(queries) / (time.perf_counter() - tick)


def main() -> None:
    import faiss

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="5000,10000,20000,40000")
    ap.add_argument("--vectors", choices=("text", "synthetic"), default="text")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    real = text_vectors() if args.vectors == "text" else None
    if real is not None:
        real = real[rng.permutation(len(real))]
        print(f"{len(real)} text vectors", flush=True)
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        if real is not None:
            if n + 200 > len(real):
                raise SystemExit(f"--sizes {n}: the text collection has {len(real)} vectors (use --vectors synthetic)")
            pool, queries = np.ascontiguousarray(real[200:200 + n]), real[:200]
        else:
            pool = vectors(n, rng)
            queries = pool[rng.integers(0, n, 200)] + 0.3 * rng.standard_normal((200, DIM)).astype(np.float32)
            queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        exact = Index(None, {}, [Passage(str(i), "") for i in range(n)], pool)  # the search stepwise runs
        tick = time.perf_counter()
        ann = faiss.IndexHNSWFlat(DIM, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        ann.hnsw.efSearch = HNSW_EF_SEARCH
        ann.add(pool)
        build = time.perf_counter() - tick
        _, truth = exact.search(queries, K)
        _, found = ann.search(queries, K)
        recall = float(np.mean([len(set(t) & set(f)) / K for t, f in zip(truth, found)]))
        by_exact, by_hnsw = partial(exact.search, k=K), partial(ann.search, k=K)
        row = {"pool": n, "exact p50 ms": p50_ms(by_exact, queries), "hnsw p50 ms": p50_ms(by_hnsw, queries),
               "exact q/s b32": qps(by_exact, queries), "hnsw q/s b32": qps(by_hnsw, queries),
               "hnsw recall@10": recall, "hnsw build s": build}
        rows.append(row)
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    shown = [{k: (f"{v:.2f}" if isinstance(v, float) and "recall" not in k else
                  f"{v:.3f}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows]
    emit("index_size", shown, list(rows[0]), extra={"vectors": args.vectors,
        "raw": rows, "hnsw_m": HNSW_M, "ef_search": HNSW_EF_SEARCH, "faiss_threads": faiss.omp_get_max_threads(),
        "cpu_flags": cpu_flags()})


if __name__ == "__main__":
    main()
