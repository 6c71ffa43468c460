"""Recipe: score a trained run on a labeled file, step by step (metric, changes and latency per step)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stepwise.example import Example
from stepwise.predictor import PredictOptions, Predictor, load
from stepwise.rundir import model_meta
from stepwise.tasks import task_from_meta
from stepwise.tasks.base import Task


def read_labeled(task: Task, data: str | Path, **read_options: Any) -> list[Example]:
    """Labeled examples for a run's task, checked: another task's file and unknown labels are named as such."""
    examples = task.read_file(str(data), **read_options)
    task.check_data(examples, str(data), fix=f"this is a {task.noun} run: evaluate it on {task.data_hint}")
    task.check_labels(examples, str(data))
    task.prepare(examples)
    return examples


def evaluate(run: str | Path, data: str | Path, *, steps: int | None = None, confidence: float | None = None,
             time_budget_ms: float | None = None, keep: str = "last", predictor: Predictor | None = None,
             examples: list[Example] | None = None, **read_options: Any) -> dict[str, Any]:
    """Metrics, report text, per-step rows and the refinement result of a run on a labeled file.

    The data is read and checked before the model loads; pass `examples` already read with
    `read_labeled` (and a loaded `predictor`) to skip both.
    """
    from stepwise.numbers import check_finite

    check_finite({"confidence": confidence, "time_budget_ms": time_budget_ms})
    if examples is None:
        examples = read_labeled(task_from_meta(model_meta(run)), data, **read_options)
    predictor = predictor or load(run)
    task = predictor.task
    result = predictor.run(examples, PredictOptions(steps, confidence, time_budget_ms, keep))
    gold = task.gold(examples)
    metric = task.default_metric
    per_step = []
    for stat in result.stats:
        scores = task.metrics(gold, [task.ids_to_labels(p) for p in result.at_step(stat.step)])
        per_step.append({"step": stat.step, metric: round(scores[metric], 6), "changed": round(stat.changed, 4),
                         "active": stat.active, "seconds": round(stat.seconds, 4),
                         "ms_per_example": round(1000 * stat.seconds / max(len(examples), 1), 3)})
    pred = [task.ids_to_labels(p) for p in result.predictions]
    return {"metrics": task.metrics(gold, pred), "report": task.report_text(gold, pred), "steps": per_step,
            "mean_steps": result.mean_steps, "result": result, "examples": examples, "pred": pred}
