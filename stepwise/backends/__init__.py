"""Inference backends: whatever turns a padded batch of int64 arrays into logits.

Everything above a backend (features, batching, decoding, refinement, records, the server) is
backend-neutral numpy, so PyTorch and ONNX Runtime are interchangeable behind `Predictor`.

`stepwise.load` opens a model directory through the registry below: each backend has an opener that says
which directories it takes for `backend="auto"` and returns the parts of a Predictor. The registry holds
"module:attribute" strings, so listing the names (the `--backend` choices) imports no torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np


class Backend(Protocol):
    name: str

    @property
    def input_names(self) -> tuple[str, ...]:
        """The batch arrays the model reads (others in the batch, such as labels, are ignored)."""

    def run(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """Logits for a padded batch: (batch, labels) or (batch, tokens, labels), float32."""


@dataclass
class Opened:
    """What an opener hands to the Predictor: the torch module (None without torch), tokenizer, the model's
    stepwise.json, the backend (None: the Predictor runs `model` on PyTorch at the run's precision), options
    the backend fixes whatever was asked (ONNX Runtime computes in fp32), and the longest input the model's
    positions allow (None: no limit)."""

    model: Any
    tokenizer: Any
    meta: dict[str, Any]
    backend: Backend | None = None
    fixed: dict[str, Any] = field(default_factory=dict)
    max_length_limit: int | None = None


class Opener(Protocol):
    def claims(self, path: str | Path) -> bool:
        """Whether `backend="auto"` should open `path` with this backend (the first registered that claims it
        wins; none: the first registered, whose `open` says what is wrong)."""

    def open(self, path: str | Path, *, threads: int | None = None) -> Opened:
        """Open `path` (a StepwiseError when this backend cannot run it, saying which can)."""


AUTO = "auto"
_OPENERS: dict[str, str | Opener] = {
    "torch": "stepwise.backends.open_run:OPENER",  # a run directory
    "onnx": "stepwise.deploy.exported:OPENER",  # an exported directory
}


def register_backend(name: str, opener: str | Opener) -> None:
    """Make `stepwise.load(..., backend=name)` and `--backend name` use `opener` (or "module:attribute")."""
    _OPENERS[name] = opener


def backend_names() -> list[str]:
    """The `--backend` choices: "auto" and every registered backend."""
    return [AUTO, *_OPENERS]


def opener_for(path: str | Path, name: str = AUTO) -> Opener:
    """The opener of backend `name`; for "auto" the first registered one that claims `path`."""
    if name != AUTO and name not in _OPENERS:
        from stepwise.errors import StepwiseError

        raise StepwiseError(f"unknown backend {name!r}", fix="use " + ", ".join(backend_names()[:-1])
                            + f" or {backend_names()[-1]}")
    if name != AUTO:
        return _opener(name)
    return next((_opener(key) for key in _OPENERS if _opener(key).claims(path)), _opener(next(iter(_OPENERS))))


def _opener(name: str) -> Opener:
    entry = _OPENERS[name]
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = _OPENERS[name] = getattr(importlib.import_module(module), attr)
    return entry


__all__ = ["AUTO", "Backend", "Opened", "Opener", "backend_names", "opener_for", "register_backend"]
