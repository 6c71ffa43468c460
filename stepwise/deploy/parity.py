"""The parity gate: an export is accepted only if it predicts what the run predicts.

Both predictors score the same labeled examples through the same engine (refinement included); the
gate compares raw logits on the first step's batches, the labels/tags chosen, and the task metric.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stepwise.data.batching import pad, sorted_batches
from stepwise.errors import StepwiseError
from stepwise.example import Example

MIN_AGREEMENT = 0.995  # fp32: share of labels (classifier) or tags (tagger) that must agree
MAX_METRIC_DROP = 0.005  # int8: the metric may fall by at most half a point


def max_logit_delta(reference: Any, candidate: Any, examples: list[Example]) -> float:
    """Largest |Δ logit| over real (unpadded) positions, first refinement step."""
    from stepwise.refine.policy import first_step

    features = first_step(reference.task, reference.encode(examples), reference.backend.input_names)
    worst = 0.0
    for idx in sorted_batches([len(f["input_ids"]) for f in features], reference.batch_size):
        batch = pad([features[i] for i in idx], reference.tokenizer.pad_token_id)
        a, b = reference.backend.run(batch), candidate.backend.run(batch)
        delta = np.abs(a - b)
        if delta.ndim == 3:
            delta = delta[batch["attention_mask"].astype(bool)]
        worst = max(worst, float(delta.max()))
    return worst


def agreement(ref: list[Any], cand: list[Any]) -> dict[str, float]:
    """Share of labels/tags (an editor: words of the final sentence) and of whole examples that agree; a
    prediction of another length agrees nowhere."""
    same = sum(int(np.sum(np.atleast_1d(a) == np.atleast_1d(b))) if np.shape(a) == np.shape(b) else 0
               for a, b in zip(ref, cand))
    total = sum(max(np.size(a), 1) for a in ref)
    return {"label_agreement": round(same / max(total, 1), 6),
            "example_agreement": round(float(np.mean([np.array_equal(a, b) for a, b in zip(ref, cand)])), 6)}


def compare(reference: Any, candidate: Any, examples: list[Example]) -> dict[str, Any]:
    """Logit delta, agreement (per label/tag and per example) and both metrics."""
    task = reference.task
    ref = reference.run(examples).predictions
    cand = candidate.run(examples).predictions
    gold = task.gold(examples)
    metric = task.default_metric
    return {"examples": len(examples), "max_abs_logit_delta": round(max_logit_delta(reference, candidate, examples), 6),
            **agreement(ref, cand), "metric": metric,
            "metric_torch": round(task.metrics(gold, [task.ids_to_labels(p) for p in ref])[metric], 6),
            "metric_onnx": round(task.metrics(gold, [task.ids_to_labels(p) for p in cand])[metric], 6)}


def gate(report: dict[str, Any], int8: bool, where: str) -> None:
    """Refuse an export that changes predictions (fp32) or loses more than half a point (int8)."""
    if int8:
        drop = report["metric_torch"] - report["metric_onnx"]
        if drop > MAX_METRIC_DROP:
            raise StepwiseError(f"the int8 export loses {100 * drop:.2f} points of {report['metric']} "
                                f"({report['metric_torch']:.4f} → {report['metric_onnx']:.4f}); nothing written",
                                path=where, fix="export without --int8, or distill/prune and retry")
    elif report["label_agreement"] < MIN_AGREEMENT:
        raise StepwiseError(f"the ONNX export agrees with the run on only {100 * report['label_agreement']:.2f}% of "
                            f"predictions (max |Δ logit| {report['max_abs_logit_delta']:.3g}); nothing written",
                            path=where, fix="report this as a bug with the run's model/stepwise.json")
