"""The contract between a task and the shared loop, inference and reports."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import numpy as np

from stepwise.errors import StepwiseError
from stepwise.example import IGNORE_INDEX, UNLABELED, Example, Feature

if TYPE_CHECKING:  # torch and transformers load when a model is used, not to read or check data
    import torch
    from transformers import PreTrainedTokenizerBase


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities over the last axis, in float32 whatever the backend's output dtype."""
    z = np.asarray(logits, dtype=np.float32)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def check_classes(labels: list[str], path: str | None = None) -> None:
    """A model needs at least two labels to choose between."""
    if len(labels) < 2:
        raise StepwiseError(f"need at least 2 classes, found {len(labels)} ({', '.join(labels) or 'none'})",
                            path=path, fix="add examples of another class")


class Task(ABC):
    """What differs between classification and tagging; everything else is shared.

    Everything task-specific that the recipes, the CLI, the writers and the server need is an attribute
    or a method here, so a new task touches `stepwise/tasks/` and nothing else.
    """

    name: str
    #: what a trained run of this task is called in messages ("a tagger run")
    noun: str
    pooling: str
    default_metric: str
    #: dev metrics that can pick the best checkpoint (all "higher is better"); "reward" is added for rl
    metric_names: tuple[str, ...]
    #: reading format for .txt files and unknown extensions (None: decide by extension)
    read_format: str | None = None
    #: the built-in rewards that make sense for this task's predictions; the first is the default
    rewards: tuple[str, ...]
    #: output formats of `predict` (jsonl is a record per example); the first is the default
    output_formats: tuple[str, ...] = ("jsonl", "tsv")
    #: True when prediction always iterates on the task's own output (editing), with no extra model input
    iterative: bool = False
    #: passes at prediction time when the run does not say
    default_steps: int = 1
    #: an input may come as a list of words instead of a string (a tagger's CoNLL tokens)
    takes_token_lists: bool = False
    #: an input may carry a second text (text-pair classification), when the model was trained on pairs
    takes_text_pairs: bool = False
    #: whether examples of one document inform each other (a tagger's document context): the server then
    #: takes each text's document
    takes_documents: bool = False
    #: the task-specific training options (TrainConfig fields) this task reads; a run of a task that does not
    #: list an option some other task lists refuses it rather than ignoring it
    config_fields: tuple[str, ...] = ()

    def __init__(self, labels: list[str], **options: Any) -> None:
        check_classes(labels)
        self.labels = list(labels)
        self.label_to_id = {label: i for i, label in enumerate(self.labels)}
        self.options = options

    @property
    def default_reward(self) -> str:
        return self.rewards[0]

    @classmethod
    def options_from_config(cls, config: Any, train_examples: list[Example]) -> dict[str, Any]:
        """Task options taken from the training config and data (saved with the model)."""
        return {}

    # --- labels -------------------------------------------------------------------------------
    #: what this task's labeled files look like, for messages
    data_hint: str

    @classmethod
    def read_file(cls, path: str, *, targets: list[str] | None = None, **read_options: Any) -> list[Example]:
        """Examples of this task from a file (`read_options`: format, columns, require_labels, keep_blank)."""
        from stepwise.data.readers import read_examples

        if targets:
            raise StepwiseError(f"target files are for editor runs, not {cls.noun} runs",
                                fix="drop --train-target/--dev-target/--test-target, or use --task edit")
        return read_examples(path, prefer=cls.read_format, **read_options)

    @classmethod
    def stratum(cls, label: Any) -> str:
        """The group an example is split by when dev/test are split off the training file."""
        from stepwise.data.split import label_stratum

        return label_stratum(label)

    @classmethod
    def data_notes(cls, train: list[Example]) -> dict[str, Any]:
        """Facts about the training data worth keeping in results.json (e.g. an editor's tag coverage)."""
        return {}

    def step_inputs(self, config: Any, tokenizer: Any, precision: str) -> Any:
        """Training inputs made on the fly from the current model (`inputs(model, feats)`, a seeded `rng`), or
        None: the features as encoded (a refiner's previous predictions are the loop's default)."""
        return None

    def augment(self, examples: list[Example], rate: float, seed: int) -> list[Example]:
        """A noisy copy of each training example (`--augment`): learner noise at the default rates × `rate`."""
        raise StepwiseError(f"--augment is not available for {self.noun} runs", fix="drop --augment")

    def gold(self, examples: list[Example]) -> list[Any]:
        """What `metrics` compares predictions with (an editor also needs the source sentence)."""
        return [ex.label for ex in examples]

    def perfect(self, gold: Any) -> Any:
        """The prediction that matches one gold item exactly (a reward's sanity check)."""
        return gold

    def action_outcomes(self, features: list[Feature], **follow: Any) -> Any:
        """For RL: None when the actions (labels, tags) are the prediction and the gold labels its gold; else
        f(pair_ids, action rows) -> (predictions, golds) for tasks whose actions build the prediction.
        `follow` (model, tokenizer, passes, ...): an iterative task's prediction is what its later passes make
        of the actions' outcome."""
        return None

    @classmethod
    @abstractmethod
    def check_data(cls, examples: list[Example], path: str, fix: str | None = None) -> None:
        """Raise a StepwiseError when a file holds another task's data (e.g. CoNLL tags for a classifier)."""

    @classmethod
    @abstractmethod
    def collect_labels(cls, examples: list[Example]) -> list[str]:
        """The label set seen in training data (after `clean_labels`), in a stable order."""

    @classmethod
    def clean_labels(cls, examples: list[Example], options: dict[str, Any]) -> int:
        """Clean gold labels in place before training (e.g. BIO repair); returns how many were changed."""
        return 0

    @abstractmethod
    def check_labels(self, examples: list[Example], path: str) -> None:
        """Raise a StepwiseError for a label the model cannot predict (never seen in train)."""

    def prepare(self, examples: list[Example]) -> int:
        """`clean_labels` with this task's options."""
        return self.clean_labels(examples, self.options)

    @property
    def extra_inputs(self) -> dict[str, int]:
        """Extra per-token id inputs the model embeds (name → vocabulary size)."""
        return {}

    # --- encoding and decoding ----------------------------------------------------------------
    @abstractmethod
    def encode(self, tokenizer: PreTrainedTokenizerBase, examples: list[Example], max_length: int,
               with_labels: bool = True) -> list[Feature]:
        """Token ids (and label ids) for each example; one example may become several windows."""

    def mark_unlabeled(self, features: list[Feature]) -> list[Feature]:
        """Features of unlabeled text (`encode(..., with_labels=False)`) with UNLABELED where a label would be:
        the positions a distilled student matches the teacher on, without a gold label."""
        return [{**f, "labels": UNLABELED} for f in features]

    @abstractmethod
    def decode(self, logits: np.ndarray, batch: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Per-feature probabilities from the head's logits (numpy, any backend), padding removed."""

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

    def empty_record(self, example: Example) -> dict[str, Any]:
        """The record of an input with no text: nothing predicted, said so."""
        return {"text": example.text, "label": None, "note": "no text"}

    @classmethod
    def check_output_format(cls, fmt: str) -> None:
        if fmt not in cls.output_formats:
            raise StepwiseError(f"--output-format {fmt} is not available for {cls.noun} runs",
                                fix=f"use one of {', '.join(cls.output_formats)}")

    def format_prediction(self, example: Example, probs: Any, fmt: str) -> str:
        """One example's prediction in an output format of `output_formats`, newline-terminated.

        An input with no text (probs None) still gets its line: the empty record, or an empty line.
        """
        self.check_output_format(fmt)
        if fmt == "jsonl":
            record = self.empty_record(example) if probs is None else self.prediction_record(example, probs)
            return json.dumps(record) + "\n"
        return ("" if probs is None else self.prediction_tsv(example, probs)) + "\n"

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
        import torch.nn.functional as F

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

    def multi_step(self, input_names: Any) -> bool:
        """Whether a model reading `input_names` predicts in several steps: a refiner reads its previous
        prediction; an iterative task always re-reads its own output."""
        from stepwise.refine.policy import PREV

        return self.iterative or PREV in input_names

    def initial_states(self, examples: list[Example]) -> list[Any] | None:
        """Each example's state before the first step (None: "no prediction yet"; an editor: the source)."""
        return None

    def policy(self, backend: Any, tokenizer: Any, examples: list[Example], features: list[Feature], *,
               batch_size: int, max_length: int) -> Any:
        """The refinement engine's policy: the model re-run with its previous prediction as an input."""
        from stepwise.refine.policy import ModelPolicy

        return ModelPolicy(backend, self, examples, features, batch_size=batch_size, pad_id=tokenizer.pad_token_id)

    # --- prompting an LLM (stepwise.llm): what a prompt shows, and how a reply is read ---------
    #: label → the word an LLM sees for it (e.g. SST-2's 0/1 as negative/positive); unmapped labels show as is
    label_words: dict[str, str] = {}

    def word(self, label: str) -> str:
        return self.label_words.get(label, label)

    def llm_text(self, example: Example) -> str:
        """The input as a prompt shows it."""
        return str(example.text)

    def llm_gold(self, example: Example) -> Any:
        """A labeled example's answer, as prediction ids (a few-shot example's answer)."""
        raise StepwiseError(f"an LLM policy is not available for {self.noun} runs")

    def llm_wrong(self, example: Example) -> Any:
        """A wrong first draft for a few-shot example of the revise prompt (ids)."""
        raise StepwiseError(f"an LLM policy is not available for {self.noun} runs")

    def llm_fallback(self, example: Example, shots: list[Example]) -> Any:
        """The prediction (ids) when an LLM gives no valid answer at the first step."""
        raise StepwiseError(f"an LLM policy is not available for {self.noun} runs")

    def llm_fallback_output(self, ids: Any, example: Example, shots: list[Example]) -> Any:
        """The output reported for a fallback: no more confident than what it was drawn from (not one-hot)."""
        return self.llm_output(ids, example)

    def llm_answer(self, ids: Any, example: Example) -> str:
        """A prediction (ids) as a prompt shows it."""
        raise StepwiseError(f"an LLM policy is not available for {self.noun} runs")

    def llm_parse(self, reply: str, example: Example) -> Any | None:
        """The prediction ids in an LLM's reply, or None when the reply is not a valid answer."""
        raise StepwiseError(f"an LLM policy is not available for {self.noun} runs")

    def llm_max_tokens(self, example: Example) -> int:
        """Generation budget for one answer."""
        return 8

    def llm_output(self, ids: Any, example: Example) -> Any:
        """The raw output of an LLM step, in the form records and `to_labels` read (one-hot probabilities)."""
        raise StepwiseError(f"an LLM policy is not available for {self.noun} runs")

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
