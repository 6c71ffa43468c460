"""The contract between a task and the shared loop, inference and reports."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerBase

from stepwise.data.batching import IGNORE_INDEX, Feature
from stepwise.data.readers import Example
from stepwise.errors import StepwiseError


class Task(ABC):
    """What differs between classification and tagging; everything else is shared."""

    name: str
    pooling: str
    default_metric: str
    #: metrics where lower is better would go here; all of ours are "higher is better".

    def __init__(self, labels: list[str], **options: Any) -> None:
        if len(labels) < 2:
            raise StepwiseError(f"need at least 2 classes, found {len(labels)} ({', '.join(labels) or 'none'})",
                                fix="add examples of another class")
        self.labels = list(labels)
        self.label_to_id = {label: i for i, label in enumerate(self.labels)}
        self.options = options

    # --- labels -------------------------------------------------------------------------------
    @staticmethod
    @abstractmethod
    def collect_labels(examples: list[Example]) -> list[str]:
        """The label set seen in training data, in a stable order."""

    @abstractmethod
    def check_labels(self, examples: list[Example], path: str) -> None:
        """Raise a StepwiseError for a label the model cannot predict (never seen in train)."""

    def prepare(self, examples: list[Example]) -> int:
        """Clean gold labels in place before training (e.g. BIO repair); returns how many were changed."""
        return 0

    @property
    def extra_inputs(self) -> dict[str, int]:
        """Extra per-token id inputs the model embeds (name → vocabulary size)."""
        return {}

    # --- encoding and decoding ----------------------------------------------------------------
    @abstractmethod
    def encode(self, tokenizer: PreTrainedTokenizerBase, examples: list[Example], max_length: int,
               with_labels: bool = True) -> list[Feature]:
        """Token ids (and label ids) for each example; one example may become several windows."""

    @abstractmethod
    def decode(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> list[np.ndarray]:
        """Per-feature probabilities from the head's logits, padding removed."""

    @abstractmethod
    def merge(self, examples: list[Example], features: list[Feature], probs: list[np.ndarray]) -> list[Any]:
        """Per-example probabilities from per-feature ones (tagging merges windows)."""

    @abstractmethod
    def to_labels(self, probs: Any) -> Any:
        """The predicted label (or tag sequence) from an example's probabilities."""

    # --- output ---------------------------------------------------------------------------------
    @abstractmethod
    def prediction_record(self, example: Example, probs: Any) -> dict[str, Any]:
        """One JSON object for `predict --format jsonl`."""

    @abstractmethod
    def prediction_tsv(self, example: Example, probs: Any) -> str:
        """Text lines for `predict --format tsv` (tagging: a CoNLL block)."""

    # --- scoring ------------------------------------------------------------------------------
    @abstractmethod
    def metrics(self, gold: list[Any], pred: list[Any]) -> dict[str, Any]:
        """Flat headline metrics plus per-label detail."""

    @abstractmethod
    def report_text(self, gold: list[Any], pred: list[Any]) -> str:
        """A human-readable report: per-label P/R/F1 and more."""

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor], label_smoothing: float,
             per_batch: float | None = None) -> torch.Tensor:
        """Cross-entropy over every labeled position; the same for a label per text or per token.

        By default the mean over the batch's labels. With `per_batch` (the average number of labels per
        batch) the sum divided by it: a batch of short sentences then weighs less than one of long ones.
        """
        flat = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), batch["labels"].reshape(-1),
                               ignore_index=IGNORE_INDEX, label_smoothing=label_smoothing,
                               reduction="mean" if per_batch is None else "sum")
        return flat if per_batch is None else flat / per_batch

    # --- refinement: the previous step's prediction as a per-token input ---------------------
    def prediction_ids(self, probs: Any) -> Any:
        """Label ids from probabilities (one id, or one per word)."""
        return np.argmax(probs, axis=-1)

    def ids_to_labels(self, ids: Any) -> Any:
        if np.ndim(ids) == 0:
            return self.labels[int(ids)]
        return [self.labels[int(i)] for i in ids]

    @abstractmethod
    def slice_prediction(self, feature: Feature, example_ids: Any) -> Any:
        """The part of an example's prediction that one feature (window) covers."""

    @abstractmethod
    def prev_ids(self, feature: Feature, ids: Any) -> list[int]:
        """Per-token ids of the previous prediction for `feature` (label id + 1; 0 = none yet)."""

    @abstractmethod
    def confidence(self, probs: Any) -> float:
        """The model's own score of a prediction, used to stop early and to keep the best step."""

    def units(self, features: list[Feature]) -> int:
        """How many examples (sentences) a list of features covers, for throughput."""
        return len({f.get("_example", i) for i, f in enumerate(features)})
