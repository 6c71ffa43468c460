"""The units data turns into: an `Example` (a text and its gold answer) and a `Feature` (its encoded form).

Kept apart from the readers and the batching so that tasks, inference and training can name them without
importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

Text = Union[str, list[str]]
Label = Union[str, list[str], None]

#: an encoded example: input arrays by name (input_ids, attention_mask, labels, ...), unpadded
Feature = dict[str, Any]
#: a label position the loss and the metrics skip (a sub-word after a word's first, padding)
IGNORE_INDEX = -100
#: a position with no gold label that still counts for the teacher's soft targets (distillation on unlabeled
#: text, stepwise.training.objectives.distill); only that objective ever sees it
UNLABELED = -1


@dataclass
class Example:
    """One labeled unit: a text (classification) or a word sequence (tagging), by named fields.

    `pair` is an optional second text (text-pair classification: entailment, paraphrase); the encoder
    sees it as segment B. `line` is where the example starts in its file, for error messages. `doc` is
    the document the example belongs to (CoNLL files number theirs by -DOCSTART- lines); None when the
    file has no documents.
    """

    text: Text
    label: Label = None
    line: int = 0
    pair: str | None = None
    doc: int | None = None


class Examples(list):
    """A list of examples plus what the reader cleaned on the way (reported in results.json)."""

    cleaned: dict[str, int]

    def __init__(self, items: list[Example] = (), cleaned: dict[str, int] | None = None) -> None:
        super().__init__(items)
        self.cleaned = dict(cleaned or {})
