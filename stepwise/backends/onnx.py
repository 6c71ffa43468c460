"""The ONNX Runtime backend: an exported graph on the CPU execution provider."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class OnnxBackend:
    name = "onnx"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._inputs = tuple(i.name for i in self.session.get_inputs())

    @property
    def input_names(self) -> tuple[str, ...]:
        return self._inputs

    def run(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, {name: batch[name] for name in self._inputs})[0].astype(np.float32, copy=False)
