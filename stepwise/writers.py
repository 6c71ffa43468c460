"""Prediction output formats: JSONL (label and probabilities), TSV, CoNLL."""

from __future__ import annotations

import json
from typing import Any

from stepwise.data.readers import Example
from stepwise.errors import StepwiseError
from stepwise.tasks.base import Task


def format_predictions(task: Task, examples: list[Example], probs: list[Any], fmt: str) -> str:
    if fmt == "jsonl":
        return "".join(json.dumps(task.prediction_record(ex, p)) + "\n" for ex, p in zip(examples, probs))
    if fmt == "tsv":
        return "".join(task.prediction_tsv(ex, p) + "\n" for ex, p in zip(examples, probs))
    if fmt == "conll":
        if task.name != "tag":
            raise StepwiseError("--format conll is for tagging runs", fix="use --format jsonl or tsv")
        return "".join(task.prediction_tsv(ex, p) + "\n" for ex, p in zip(examples, probs))
    raise StepwiseError(f"unknown output format {fmt!r}", fix="use jsonl, tsv or conll")
