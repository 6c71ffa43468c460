"""The ONNX Runtime backend: an exported graph on the CPU execution provider."""

from __future__ import annotations

import itertools
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

# ORT's SkipLayerNormalization CPU kernel is slower than the Add and LayerNormalization it replaces: SST-2
# int8 +23% examples/s, fp32 +8% without it (bench/NOTES.md); `export` leaves them apart
UNFUSED = ["SkipLayerNormFusion"]


def _session(path: str | Path, threads: int | None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=UNFUSED)


class OnnxBackend:
    name = "onnx"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        self.path = Path(path)
        self.session = _session(path, threads)
        available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.streams = threads or available  # batches side by side in `run_many`
        self._inputs = tuple(i.name for i in self.session.get_inputs())
        self._single: Any = None  # a one-thread session for batches side by side, made on first use

    @property
    def input_names(self) -> tuple[str, ...]:
        return self._inputs

    def run(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        return self._run(self.session, batch)

    def run_many(self, batches: Iterable[dict[str, np.ndarray]]) -> Iterator[np.ndarray]:
        """Logits of several batches, in order, `streams` of them side by side on one thread each.

        A batch of short texts is many small ops (LayerNorm, GELU, quantizing activations) that split badly
        over threads; whole batches in parallel need no synchronisation: +12% examples/s for SST-2 int8 on 2
        cores (bench/NOTES.md). A single batch (a server's micro-batch) keeps every thread.
        """
        batches = iter(batches)
        first, second = next(batches, None), next(batches, None)
        if first is None:
            return
        if second is None:
            yield self.run(first)
            return
        if self.streams < 2:
            yield from map(self.run, itertools.chain((first, second), batches))
            return
        if self._single is None:
            self._single = _session(self.path, 1)
        with ThreadPoolExecutor(self.streams) as pool:
            pending: deque = deque()
            for batch in itertools.chain((first, second), batches):  # lazily: only those in flight are held
                pending.append(pool.submit(self._run, self._single, batch))
                if len(pending) > 2 * self.streams:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def _run(self, session: Any, batch: dict[str, np.ndarray]) -> np.ndarray:
        return session.run(None, {name: batch[name] for name in self._inputs})[0].astype(np.float32, copy=False)
