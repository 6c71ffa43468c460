"""Recipe: predictions for new inputs, one output per input line, in any of the task's formats."""

from __future__ import annotations

import json
from typing import Any

from stepwise.example import Example
from stepwise.predictor import PredictOptions, Predictor
from stepwise.refine import RefineResult
from stepwise.tasks.base import Task
from stepwise.writers import format_predictions


def read_inputs(task: type[Task] | Task, path: str, fmt: str | None = None, **read_options: Any) -> list[Example]:
    """Inputs to predict: plain text (one per line, blank lines kept), or a labeled file whose labels are gold.

    Plain text on stdin works for every task (a tagger splits each line into words).
    """
    if path == "-" and fmt is None:
        fmt = "tsv"
    if task.read_format == "conll" and fmt == "tsv":
        read_options["label_column"] = None  # text for a tagger: one sentence per line, no tag column
    examples = task.read_file(path, fmt=fmt, require_labels=False, keep_blank=True, **read_options)
    if task.read_format != "conll" and any(isinstance(ex.text, list) for ex in examples):  # CoNLL for a classifier
        task.check_data(examples, path, fix=f"this is a {task.noun} run: give it {task.data_hint}, or plain text")
    return examples


def predict(predictor: Predictor, examples: list[Example], options: PredictOptions,
            fmt: str = "jsonl") -> tuple[str, RefineResult]:
    """The formatted output and the refinement result (for traces)."""
    predictor.task.check_output_format(fmt)
    result = predictor.run(examples, options)
    return format_predictions(predictor.task, examples, result.outputs, fmt), result


def trace_lines(task: Task, result: RefineResult) -> str:
    """Every step of every example: prediction, score, and the step kept."""
    lines = []
    for i, (history, scores) in enumerate(zip(result.history, result.scores)):
        steps = [{"step": t + 1, "prediction": _plain(task.ids_to_labels(p)), "score": round(s, 6)}
                 for t, (p, s) in enumerate(zip(history, scores))]
        lines.append(json.dumps({"index": i, "steps": steps, "chosen_step": result.chosen_step[i]}) + "\n")
    return "".join(lines)


def _plain(value: Any) -> Any:
    return value if isinstance(value, (str, list)) else str(value)
