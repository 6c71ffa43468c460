"""A trained run, loaded for prediction and evaluation: `load(RUN).predict(texts)`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerBase

from stepwise.data.batching import Feature
from stepwise.data.readers import Example
from stepwise.errors import StepwiseError
from stepwise.infer import predict_features, resolve_precision
from stepwise.model import TaskModel
from stepwise.refine import RefineResult, refine
from stepwise.refine.policy import PREV, ModelPolicy
from stepwise.tasks import Task, get_task


class Predictor:
    """Wraps model, tokenizer and task; inference is length-sorted internally, results in input order."""

    def __init__(self, model: TaskModel, tokenizer: PreTrainedTokenizerBase, task: Task, *, max_length: int = 256,
                 batch_size: int = 64, precision: str = "auto", steps: int = 1) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.task = task
        self.max_length = max_length
        self.batch_size = batch_size
        self.precision = resolve_precision(precision)
        self.steps = steps

    @property
    def is_refiner(self) -> bool:
        """A refiner reads its previous prediction; a single-step model has no such input."""
        return PREV in self.model.extra_inputs

    @property
    def labels(self) -> list[str]:
        return self.task.labels

    def _examples(self, inputs: Sequence[Any]) -> list[Example]:
        return [x if isinstance(x, Example) else Example(x, None, i + 1) for i, x in enumerate(inputs)]

    def probabilities(self, examples: list[Example], features: list[Feature] | None = None) -> list[Any]:
        """Per-example probabilities (an array per text, or per word for tagging)."""
        if self.is_refiner:
            return self.refine(examples, features).outputs
        if features is None:
            features = self.task.encode(self.tokenizer, examples, self.max_length, with_labels=False)
        probs = predict_features(self.model, self.task, features, batch_size=self.batch_size,
                                 precision=self.precision, pad_id=self.tokenizer.pad_token_id)
        return self.task.merge(examples, features, probs)

    def refine(self, examples: list[Example], features: list[Feature] | None = None, *, steps: int | None = None,
               confidence: float | None = None, time_budget_ms: float | None = None, keep: str = "last",
               stop_on_no_change: bool = True) -> RefineResult:
        """Predict in up to `steps` steps, each seeing the previous one (a single-step model runs 1 step)."""
        if features is None:
            features = self.task.encode(self.tokenizer, examples, self.max_length, with_labels=False)
        policy = ModelPolicy(self.model, self.task, examples, features, batch_size=self.batch_size,
                             precision=self.precision, pad_id=self.tokenizer.pad_token_id)
        steps = (steps or self.steps) if self.is_refiner else 1
        return refine(policy, len(examples), steps=steps, confidence=confidence, time_budget_ms=time_budget_ms,
                      keep=keep, stop_on_no_change=stop_on_no_change)

    def predict_proba(self, inputs: Sequence[Any]) -> np.ndarray | list[np.ndarray]:
        """Classification: an (n, classes) array, columns in `labels` order. Tagging: one array per text."""
        probs = self.probabilities(self._examples(inputs))
        return np.stack(probs) if self.task.name == "classify" and probs else probs

    def predict(self, inputs: Sequence[Any]) -> list[Any]:
        """Labels (classification) or tag lists (tagging), in input order."""
        return [self.task.to_labels(p) for p in self.probabilities(self._examples(inputs))]

    def score(self, examples: list[Example], features: list[Feature] | None = None) -> dict[str, Any]:
        """Metrics, predictions and report text against the examples' gold labels."""
        probs = self.probabilities(examples, features)
        pred = [self.task.to_labels(p) for p in probs]
        gold = [ex.label for ex in examples]
        return {"metrics": self.task.metrics(gold, pred), "pred": pred, "probs": probs,
                "report": self.task.report_text(gold, pred)}


def load(run: str | Path, **overrides: Any) -> Predictor:
    """Load a run directory (or its model/ directory) written by `stepwise train`."""
    path = Path(run)
    if not path.exists():
        raise StepwiseError("run directory not found", path=run, fix="pass the --out directory of `stepwise train`")
    model_dir = path / "model" if (path / "model").is_dir() else path
    model, tokenizer, meta = TaskModel.from_pretrained(model_dir)
    task = get_task(meta["task"], meta["labels"], **meta.get("task_options", {}))
    options = {"max_length": meta.get("max_length", 256), "batch_size": meta.get("eval_batch_size", 64),
               "precision": meta.get("precision", "auto"), "steps": meta.get("refine_steps", 1)}
    options.update({k: v for k, v in overrides.items() if v is not None})
    return Predictor(model, tokenizer, task, **options)
