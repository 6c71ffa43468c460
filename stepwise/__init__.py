"""stepwise: prediction with language models through multi-step optimization.

Importing the package is cheap and changes nothing in the process: the heavy parts (torch,
transformers) load on first use of `train`, `load`, `evaluate`, `rl` and friends.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {"train": "stepwise.recipes.finetune", "rl": "stepwise.recipes.rl", "evaluate": "stepwise.recipes.evaluate",
            "distill": "stepwise.recipes.distill", "prune": "stepwise.recipes.prune",
            "export": "stepwise.recipes.export",
            "load": "stepwise.predictor", "Predictor": "stepwise.predictor", "PredictOptions": "stepwise.predictor",
            "Run": "stepwise.rundir",
            "TrainConfig": "stepwise.config", "Example": "stepwise.example", "StepwiseError": "stepwise.errors"}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'stepwise' has no attribute {name!r}")
