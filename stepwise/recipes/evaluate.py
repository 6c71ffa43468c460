"""Recipe: score a trained run on a labeled file, step by step (metric, changes and latency per step)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stepwise.data.readers import read_examples
from stepwise.predictor import PredictOptions, Predictor, load


def read_for(predictor: Predictor, data: str | Path, **read_options: Any) -> list:
    """Labeled examples for this run's task; another task's file is named as such."""
    task = predictor.task
    examples = read_examples(data, prefer=task.read_format, **read_options)
    task.check_data(examples, str(data), fix=f"this is a {task.noun} run: evaluate it on {task.data_hint}")
    return examples


def evaluate(run: str | Path, data: str | Path, *, steps: int | None = None, confidence: float | None = None,
             time_budget_ms: float | None = None, keep: str = "last", predictor: Predictor | None = None,
             **read_options: Any) -> dict[str, Any]:
    """Metrics, report text, per-step rows and the refinement result of a run on a labeled file."""
    predictor = predictor or load(run)
    task = predictor.task
    examples = read_for(predictor, data, **read_options)
    task.check_labels(examples, str(data))
    task.prepare(examples)
    result = predictor.run(examples, PredictOptions(steps, confidence, time_budget_ms, keep))
    gold = [ex.label for ex in examples]
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
