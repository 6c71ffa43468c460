"""Texts → unit vectors on a backend (the torch bi-encoder or its ONNX export), in length-sorted batches."""

from __future__ import annotations

from typing import Any

import numpy as np

from stepwise.data.batching import pad, sorted_batches


class Embedder:
    def __init__(self, backend: Any, tokenizer: Any, *, max_length: int = 256, batch_size: int = 64) -> None:
        self.backend, self.tokenizer = backend, tokenizer
        self.max_length, self.batch_size = max_length, batch_size

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]

    def embed_ids(self, ids: list[list[int]]) -> np.ndarray:
        """Vectors for token id lists, in input order (float32, unit length)."""
        if not ids:
            return np.zeros((0, 0), dtype=np.float32)
        out: np.ndarray | None = None
        for batch in sorted_batches([len(x) for x in ids], self.batch_size):
            arrays = pad([{"input_ids": ids[i]} for i in batch], self.tokenizer.pad_token_id)
            vectors = np.asarray(self.backend.run(arrays), dtype=np.float32)
            if out is None:
                out = np.empty((len(ids), vectors.shape[1]), dtype=np.float32)
            out[batch] = vectors
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)  # bf16 or int8 arithmetic leaves them a little off unit length

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.embed_ids(self.tokenize(texts))
