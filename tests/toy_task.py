"""A fourth task, written the way a user would write one: a registered Task subclass in this one file, with its
own option, its file detection, its search dimension and its sample. tests/test_toy_task.py registers it and
shows the rest of stepwise needs no change: the conformance suite, then train, evaluate and predict from the CLI.

The task: a rating from 1 to 5 per text, read from `.toy` files (text<TAB>rating), with its own option
`--toy-lowercase` (lower-case every text before encoding). It has none of the optional capabilities (no LLM
prompting, no rewards, no refinement input, no augmentation): the verbs that need them refuse it in one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from stepwise.config import TaskOptions
from stepwise.errors import StepwiseError
from stepwise.example import Example, Feature
from stepwise.tasks.base import Task, softmax

NAME = "toy"
RATINGS = ("1", "2", "3", "4", "5")


class ToyOptions(TaskOptions):
    toy_lowercase: bool = Field(False, description="toy: lower-case every text before encoding")


class ToyTask(Task):
    name = NAME
    noun = "toy model"
    summary = "a rating from 1 to 5 per text"
    claims_hint = ".toy files"
    options_model = ToyOptions
    search_space = {"toy_lowercase": {"choices": [True, False]}}
    pooling = "mean"
    default_metric = "accuracy"
    metric_names = ("accuracy",)
    read_format = "tsv"
    data_hint = "text<TAB>rating lines (ratings 1 to 5)"

    def __init__(self, labels: list[str], *, lowercase: bool = False, **options: Any) -> None:
        super().__init__(labels, lowercase=lowercase, **options)
        self.lowercase = lowercase

    @classmethod
    def claims_file(cls, path: str, input_format: str | None) -> bool:
        return Path(path).suffix == ".toy"

    @classmethod
    def options_from_config(cls, config: Any, train_examples: list[Example]) -> dict[str, Any]:
        return {"lowercase": config.toy_lowercase}

    @classmethod
    def check_data(cls, examples: list[Example], path: str, fix: str | None = None) -> None:
        for ex in examples:
            if not isinstance(ex.text, str) or (ex.label is not None and str(ex.label) not in RATINGS):
                raise StepwiseError("a toy example is one text with a rating from 1 to 5", path=path, line=ex.line,
                                    fix=fix or "give text<TAB>rating lines")

    @classmethod
    def collect_labels(cls, examples: list[Example]) -> list[str]:
        return sorted({str(ex.label) for ex in examples if ex.label is not None})

    def check_labels(self, examples: list[Example], path: str) -> None:
        for ex in examples:
            if ex.label is not None and ex.label not in self.label_to_id:
                raise StepwiseError(f"label {ex.label!r} was not in the training data", path=path, line=ex.line)

    def encode(self, tokenizer: Any, examples: list[Example], max_length: int,
               with_labels: bool = True) -> list[Feature]:
        texts = [ex.text.lower() if self.lowercase else ex.text for ex in examples]
        encoded = tokenizer(texts, truncation=True, max_length=max_length)
        features = []
        for i, ex in enumerate(examples):
            feature = {"input_ids": encoded["input_ids"][i], "attention_mask": encoded["attention_mask"][i],
                       "_example": i}
            if with_labels and ex.label is not None:
                feature["labels"] = self.label_to_id[ex.label]
            features.append(feature)
        return features

    def decode(self, logits: np.ndarray, batch: dict[str, np.ndarray]) -> list[np.ndarray]:
        return list(softmax(logits))

    def merge(self, examples: list[Example], features: list[Feature], probs: list[np.ndarray]) -> list[Any]:
        return probs

    def to_labels(self, probs: np.ndarray) -> str:
        return self.labels[int(np.argmax(probs))]

    def confidence(self, probs: np.ndarray) -> float:
        return float(np.max(probs))

    def prediction_record(self, example: Example, probs: np.ndarray) -> dict[str, Any]:
        return {"text": example.text, "label": self.to_labels(probs), "confidence": round(self.confidence(probs), 4)}

    def prediction_tsv(self, example: Example, probs: np.ndarray) -> str:
        return f"{example.text}\t{self.to_labels(probs)}"

    def metrics(self, gold: list[str], pred: list[str]) -> dict[str, Any]:
        return {"accuracy": sum(g == p for g, p in zip(gold, pred)) / max(len(gold), 1), "n": len(gold)}

    def report_text(self, gold: list[str], pred: list[str]) -> str:
        return f"accuracy {self.metrics(gold, pred)['accuracy']:.4f} on {len(gold)} texts\n"


def sample() -> list[Example]:
    """The conformance suite's sample: ratings 1 and 5, each with its cue word among fillers."""
    from tests.conftest import toy_sentences

    return [Example(t, y, i + 1) for i, (t, y) in enumerate(toy_sentences(12, 0, ("1", "5")))]
