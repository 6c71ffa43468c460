"""Inference backends: whatever turns a padded batch of int64 arrays into logits.

Everything above a backend (features, batching, decoding, refinement, records, the server) is
backend-neutral numpy, so PyTorch and ONNX Runtime are interchangeable behind `Predictor`.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Backend(Protocol):
    name: str

    @property
    def input_names(self) -> tuple[str, ...]:
        """The batch arrays the model reads (others in the batch, such as labels, are ignored)."""

    def run(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """Logits for a padded batch: (batch, labels) or (batch, tokens, labels), float32."""


__all__ = ["Backend"]
