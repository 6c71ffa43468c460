"""The Python API in one place: each function is a recipe (see stepwise/recipes/)."""

from __future__ import annotations

from stepwise.predictor import Predictor, load
from stepwise.recipes.evaluate import evaluate
from stepwise.recipes.finetune import train
from stepwise.recipes.rl import rl
from stepwise.rundir import Run

__all__ = ["Predictor", "Run", "evaluate", "load", "rl", "train"]
