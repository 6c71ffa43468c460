"""Prediction output: each task formats its own records (JSONL, TSV, CoNLL for taggers)."""

from __future__ import annotations

from typing import Any

from stepwise.example import Example
from stepwise.tasks.base import Task


def format_predictions(task: Task, examples: list[Example], outputs: list[Any], fmt: str) -> str:
    """One block per input, in input order; an input with no text keeps its (empty) line."""
    return "".join(task.format_prediction(ex, out, fmt) for ex, out in zip(examples, outputs))
