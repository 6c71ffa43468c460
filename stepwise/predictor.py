"""A trained run, loaded for prediction and evaluation: `load(RUN).predict(texts)`.

The Predictor is the one inference path: the CLI's `predict`/`evaluate`, evaluation during training
and the server all go through it. The model runs behind a backend (PyTorch here, ONNX Runtime for an
exported run), so everything above the backend is plain numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional

import numpy as np
from pydantic import Field

from stepwise.backends import Backend
from stepwise.example import Example, Feature
from stepwise.infer import predict_features
from stepwise.options import Options
from stepwise.refine import RefineResult, refine
from stepwise.tasks import Task, task_class, task_from_meta


class PredictOptions(Options):
    """How to run a refiner at prediction time (a single-step model ignores them); `predict` and `evaluate`
    take their flags from this model."""

    fix: ClassVar[str] = "see `stepwise predict --help`"

    steps: Optional[int] = Field(None, ge=1, description="refinement steps T (default: the run's --refine-steps)")
    confidence: Optional[float] = Field(None, gt=0, le=1, description="stop an example once its confidence "
                                        "reaches this")
    time_budget_ms: Optional[float] = Field(None, gt=0, description="start no new step after this many "
                                            "milliseconds")
    keep: Literal["last", "best"] = Field("last", description="return the last step or the step the model scores "
                                          "highest")


class Predictor:
    """Wraps backend, tokenizer and task; inference is length-sorted internally, results in input order."""

    def __init__(self, model: Any, tokenizer: Any, task: Task, *, max_length: int = 256, batch_size: int = 64,
                 precision: str = "auto", steps: int = 1, backend: Backend | None = None) -> None:
        if backend is None:
            from stepwise.backends.torch import TorchBackend

            backend = TorchBackend(model, precision)  # "auto": measured on the first batch
        self.model = model  # the torch module when there is one (training, RL, export); None for ONNX
        self.backend = backend
        self.tokenizer = tokenizer
        self.task = task
        self.max_length = max_length
        self.batch_size = batch_size
        self.steps = steps

    @property
    def precision(self) -> str:
        """The backend's precision: "auto" until the first batch has decided it (torch), "fp32" on ONNX."""
        return getattr(self.backend, "precision", "fp32")

    @property
    def is_refiner(self) -> bool:
        """A refiner reads its previous prediction (or a tagger its document's); a single-step model neither."""
        return self.task.multi_step(self.backend.input_names)

    @property
    def labels(self) -> list[str]:
        return self.task.labels

    def _examples(self, inputs: Sequence[Any]) -> list[Example]:
        return [x if isinstance(x, Example) else Example(x, None, i + 1) for i, x in enumerate(inputs)]

    def encode(self, examples: list[Example], with_labels: bool = False) -> list[Feature]:
        return self.task.encode(self.tokenizer, examples, self.max_length, with_labels=with_labels)

    def probabilities(self, examples: list[Example], features: list[Feature] | None = None) -> list[Any]:
        """Per-example probabilities (an array per text, or per word for tagging)."""
        if self.is_refiner:
            return self.refine(examples, features).outputs
        if features is None:
            features = self.encode(examples)
        probs = predict_features(self.backend, self.task, features, batch_size=self.batch_size,
                                 pad_id=self.tokenizer.pad_token_id)
        return self.task.merge(examples, features, probs)

    def refine(self, examples: list[Example], features: list[Feature] | None = None, *, steps: int | None = None,
               confidence: float | None = None, time_budget_ms: float | None = None, keep: str = "last",
               stop_on_no_change: bool = True) -> RefineResult:
        """Predict in up to `steps` steps, each seeing the previous one (a single-step model runs 1 step)."""
        if features is None:
            features = self.encode(examples)
        policy = self.task.policy(self.backend, self.tokenizer, examples, features, batch_size=self.batch_size,
                                  max_length=self.max_length)
        steps = (steps or self.steps) if self.is_refiner else 1
        return refine(policy, len(examples), steps=steps, confidence=confidence, time_budget_ms=time_budget_ms,
                      keep=keep, stop_on_no_change=stop_on_no_change, initial=self.task.initial_states(examples))

    def run(self, examples: list[Example], options: PredictOptions | None = None) -> RefineResult:
        """Predict examples under `options`; examples with no text are skipped (see `records`)."""
        options = options or PredictOptions()
        present = [ex for ex in examples if _has_text(ex)]
        result = (self.refine(present, steps=options.steps, confidence=options.confidence,
                              time_budget_ms=options.time_budget_ms, keep=options.keep)
                  if present else RefineResult([], [], [], [], [], []))
        if len(present) == len(examples):
            return result
        return _with_gaps(result, [_has_text(ex) for ex in examples])

    def records(self, examples: list[Example], result: RefineResult) -> list[dict[str, Any]]:
        """The JSON record of each example (as `predict --format jsonl` prints), in input order."""
        return [self.task.prediction_record(ex, out) if out is not None else self.task.empty_record(ex)
                for ex, out in zip(examples, result.outputs)]

    def predict_records(self, inputs: Sequence[Any], options: PredictOptions | None = None) -> list[dict[str, Any]]:
        """Texts, token lists or Examples in; one record per input out (labels, probabilities, spans)."""
        examples = self._examples(inputs)
        return self.records(examples, self.run(examples, options))

    def predict_proba(self, inputs: Sequence[Any]) -> np.ndarray | list[np.ndarray]:
        """Classification: an (n, classes) array, columns in `labels` order. Tagging: one array per text."""
        probs = self.probabilities(self._examples(inputs))
        return np.stack(probs) if probs and all(np.ndim(p) == 1 for p in probs) else probs

    def predict(self, inputs: Sequence[Any]) -> list[Any]:
        """Labels (classification) or tag lists (tagging), in input order."""
        return [self.task.to_labels(p) for p in self.probabilities(self._examples(inputs))]

    def score(self, examples: list[Example], features: list[Feature] | None = None) -> dict[str, Any]:
        """Metrics, predictions and report text against the examples' gold labels."""
        return score_probabilities(self.task, examples, self.probabilities(examples, features))


def score_probabilities(task: Task, examples: list[Example], probs: list[Any]) -> dict[str, Any]:
    """`Predictor.score` for probabilities made elsewhere (a document head's cross-validated dev outputs)."""
    pred = [task.to_labels(p) for p in probs]
    gold = task.gold(examples)
    return {"metrics": task.metrics(gold, pred), "pred": pred, "probs": probs, "report": task.report_text(gold, pred)}


def _has_text(example: Example) -> bool:
    return bool(example.text) and (not isinstance(example.text, str) or bool(example.text.strip()))


def _with_gaps(result: RefineResult, present: list[bool]) -> RefineResult:
    """Spread a result over all inputs, None where an input had no text."""
    def spread(values: list[Any], empty: Any) -> list[Any]:
        it = iter(values)
        return [next(it) if keep else empty for keep in present]

    return RefineResult(predictions=spread(result.predictions, None), outputs=spread(result.outputs, None),
                        steps_used=spread(result.steps_used, 0), chosen_step=spread(result.chosen_step, 0),
                        history=spread(result.history, []), scores=spread(result.scores, []), stats=result.stats)


def load(run: str | Path, *, backend: str = "auto", threads: int | None = None, **overrides: Any) -> Predictor:
    """Load a run directory (or its model/ directory) written by `stepwise train`, or an exported directory.

    `backend`: "auto" (ONNX Runtime for an exported directory, else torch), "torch", "onnx", or any backend
    registered with `stepwise.backends.register_backend`.
    """
    from stepwise.backends import opener_for

    opened = opener_for(run, backend).open(run, threads=threads)
    options = {**predictor_options(opened.meta, overrides), **opened.fixed}
    if opened.max_length_limit is not None:
        options["max_length"] = min(options["max_length"], opened.max_length_limit)
    return Predictor(opened.model, opened.tokenizer, task_from_meta(opened.meta), backend=opened.backend, **options)


def load_in_process(run: str | Path, *, backend: str = "auto", threads: int | None = None, share: int = 1,
                    **overrides: Any) -> Predictor:
    """`load` for a process that owns its threads (the CLI, the server, the monitor).

    `threads` forces the thread count; by default it is the cores other processes leave free, measured
    now (stepwise.threads), divided by `share` (server workers). It sets ONNX Runtime's session and this
    process's torch threads. The predictor's `thread_governor` re-counts when its owner asks
    (`recheck_threads`): the server and the monitor do so between batches.
    """
    from stepwise.layout import is_exported
    from stepwise.threads import ThreadGovernor

    governor = ThreadGovernor(forced=threads, share=share)
    governor.begin()
    if is_exported(run):  # an ONNX Runtime session takes its thread count when it is made
        governor.start()
        predictor = load(run, backend=backend, threads=governor.threads, **overrides)
    else:  # the count runs over the loading
        predictor = load(run, backend=backend, **overrides)
        governor.start()
    predictor.thread_governor = governor
    return predictor


def recheck_threads(predictor: Any) -> None:
    """Follow the machine's load between batches (torch only: an ONNX Runtime session keeps its threads)."""
    governor = getattr(predictor, "thread_governor", None)
    if governor is not None and predictor.backend.name == "torch":
        governor.recheck(0)


def predictor_options(meta: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Predictor options saved with a model, each replaced by an override that is not None."""

    options = {"max_length": meta.get("max_length", 256), "batch_size": meta.get("eval_batch_size", 64),
               "precision": meta.get("precision", "auto"),
               "steps": meta.get("refine_steps", task_class(meta["task"]).default_steps)}
    options.update({k: v for k, v in overrides.items() if v is not None})
    return options
