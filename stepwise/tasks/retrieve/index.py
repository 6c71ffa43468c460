"""A passage index: the passages, their vectors, and how to search them; tied to the model that made them.

    INDEX/
      index.json       format, id, the model's fingerprint and embedding settings, size, search kind
      passages.jsonl   id, text, category per passage (row i = vector i)
      vectors.npy      float32 unit vectors
      hnsw.faiss       the ANN graph, for pools of ANN_FROM passages or more
      calibration.json where `answer` abstains (written by `stepwise answer --oos-dev`)

Small pools are searched exactly (one matrix product); from ANN_FROM passages on, faiss's HNSW graph
(inner product) answers in well under a millisecond where the exact product grows with the pool (measured:
see ANN_FROM).
faiss-cpu rather than usearch: the same HNSW, a wheel for every platform we run on, and the library most
users of sentence-transformers already know. A query embedded by a different model is refused: its
vectors live in another space, and the scores would be noise that still looks like an answer.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stepwise.errors import StepwiseError
from stepwise.files import atomic_write_json, atomic_write_text, current_umask
from stepwise.tasks.retrieve.data import Passage

FORMAT = 1
INDEX_FILE, PASSAGES_FILE, VECTORS_FILE, ANN_FILE = "index.json", "passages.jsonl", "vectors.npy", "hnsw.faiss"
CALIBRATION_FILE = "calibration.json"
#: exact search below this many passages, HNSW from here on (bench/index_size.py, 384 dims, bf16 host): the exact
#: product is memory-bound, 1.2 ms per query at 10k passages, 7.0 at 20k, 19 at 50k, while HNSW answers in
#: 0.4-0.6 ms with recall@10 0.995 on 20k real sentence embeddings (0.992 at 40k); under 20k the exact search is
#: fast enough, exact, and has no graph to build (6 s at 10k, again on every --add)
ANN_FROM = 20_000
HNSW_M, HNSW_EF_SEARCH = 32, 128
FIX = "build it again with `stepwise index RUN --passages FILE --out DIR`"


def is_index(path: str | Path) -> bool:
    return (Path(path) / INDEX_FILE).is_file()


@dataclass
class Index:
    path: Path
    meta: dict[str, Any]
    passages: list[Passage]
    vectors: np.ndarray
    ann: Any = None

    @property
    def fingerprint(self) -> str:
        return self.meta["model"]["fingerprint"]

    # --- building -------------------------------------------------------------------------------------
    @classmethod
    def build(cls, path: str | Path, passages: list[Passage], vectors: np.ndarray, model_meta: dict[str, Any],
              source: str, model_path: str) -> Index:
        """`model_path`: the run or export that embedded the passages; `answer` embeds queries with it."""
        meta = {"format": FORMAT, "id": uuid.uuid4().hex[:16], "size": len(passages), "dim": int(vectors.shape[1]),
                "model": {"fingerprint": model_meta["fingerprint"], "source": source, "path": model_path,
                          "max_length": model_meta.get("max_length", 256), "pooling": "mean", "normalize": True},
                "search": "hnsw" if len(passages) >= ANN_FROM else "exact"}
        index = cls(Path(path), meta, passages, vectors.astype(np.float32))
        index._build_ann()
        return index

    def add(self, passages: list[Passage], vectors: np.ndarray, source: str) -> None:
        """Append passages; an id already in the index is refused (replace means a rebuild)."""
        known = {p.id for p in self.passages}
        for p in passages:
            if p.id in known:
                raise StepwiseError(f"passage id {p.id!r} is already in the index", path=source,
                                    fix="give new passages new ids, or rebuild the index")
        self.passages = self.passages + passages
        self.vectors = np.concatenate([self.vectors, vectors.astype(np.float32)])
        self.meta.update(size=len(self.passages), search="hnsw" if len(self.passages) >= ANN_FROM else "exact")
        self._build_ann()

    def _build_ann(self) -> None:
        self.ann = None
        if self.meta["search"] != "hnsw":
            return
        try:
            import faiss
        except ImportError:
            raise StepwiseError(f"an index of {len(self.passages)} passages needs faiss-cpu for approximate search",
                                fix="pip install 'stepwise[retrieval]' (or faiss-cpu)") from None
        ann = faiss.IndexHNSWFlat(self.vectors.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
        ann.hnsw.efSearch = HNSW_EF_SEARCH
        ann.add(self.vectors)
        self.ann = ann

    def save(self) -> None:
        """Everything into a temp directory beside the target, then swapped in: readers see old or new."""
        from stepwise.model import replace_dir

        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=self.path.parent))
        tmp.chmod(0o777 & ~current_umask())
        try:
            atomic_write_text(tmp / PASSAGES_FILE, "".join(
                json.dumps({"id": p.id, "text": p.text, "category": p.category}) + "\n" for p in self.passages))
            np.save(tmp / VECTORS_FILE, self.vectors)
            if self.ann is not None:
                import faiss

                faiss.write_index(self.ann, str(tmp / ANN_FILE))
            if (self.path / CALIBRATION_FILE).is_file() and self.meta.get("keep_calibration"):
                shutil.copy2(self.path / CALIBRATION_FILE, tmp / CALIBRATION_FILE)
            meta = {k: v for k, v in self.meta.items() if k != "keep_calibration"}
            atomic_write_json(tmp / INDEX_FILE, meta)
            for file in tmp.iterdir():
                file.chmod(0o666 & ~current_umask())
            replace_dir(tmp, self.path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # --- loading and searching --------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> Index:
        from stepwise.modeldir import read_json

        path = Path(path)
        if not path.is_dir():
            raise StepwiseError("index directory not found", path=path, fix=FIX)
        if not is_index(path):
            raise StepwiseError("not an index directory (no index.json)", path=path, fix=FIX)
        meta = read_json(path / INDEX_FILE, "index metadata", FIX, required={"id": str, "size": int, "model": dict},
                         newest=FORMAT)
        try:
            rows = [json.loads(line) for line in (path / PASSAGES_FILE).read_text(encoding="utf-8").splitlines()
                    if line.strip()]
            passages = [Passage(str(r["id"]), str(r["text"]), r.get("category")) for r in rows]
            vectors = np.load(path / VECTORS_FILE, allow_pickle=False)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise StepwiseError(f"the index files are missing or damaged ({type(err).__name__})", path=path,
                                fix=FIX) from None
        if len(passages) != meta["size"] or vectors.shape != (meta["size"], meta.get("dim", -1)):
            raise StepwiseError("the index files disagree about its size (damaged)", path=path, fix=FIX)
        index = cls(path, meta, passages, vectors.astype(np.float32, copy=False))
        if meta.get("search") == "hnsw":
            import faiss

            try:
                index.ann = faiss.read_index(str(path / ANN_FILE))
            except RuntimeError:
                raise StepwiseError("the index's HNSW graph is missing or damaged", path=path, fix=FIX) from None
            index.ann.hnsw.efSearch = HNSW_EF_SEARCH
        return index

    def check_model(self, fingerprint: str, what: str) -> None:
        if fingerprint != self.fingerprint:
            raise StepwiseError(f"the index was built with another model ({self.meta['model']['source']}), not "
                                f"{what}", path=self.path, fix=f"query it with the model that built it, or {FIX}")

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, passage rows), each [queries, k], best first; k is capped at the index size."""
        k = min(k, len(self.passages))
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if self.ann is not None:
            scores, rows = self.ann.search(queries, k)
            return scores, rows
        with _one_blas_thread():
            scores = queries @ self.vectors.T
        if k < scores.shape[1]:
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        else:
            top = np.tile(np.arange(scores.shape[1]), (len(queries), 1))
        order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
        rows = np.take_along_axis(top, order, axis=1)
        return np.take_along_axis(scores, rows, axis=1), rows


_CONTROLLER: Any = None


def _one_blas_thread() -> Any:
    """BLAS on one thread for the exact product: scoring a query against the pool reads every vector once
    (memory-bound, one core keeps up), and a second BLAS thread that waits for a core another process holds
    cost 20 ms per query on a busy host (0.11 ms on one thread; bench/NOTES.md, index). Scoped: restored after."""
    global _CONTROLLER
    from threadpoolctl import ThreadpoolController

    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")
