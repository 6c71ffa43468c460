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
    or a method here or in an optional capability (stepwise.tasks.capabilities: refinement with the previous
    prediction, LLM prompting, rewards, augmentation), so a new task touches `stepwise/tasks/` and nothing
    else.
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
    #: what it predicts, in a few words (the --task help)
    summary: str = ""
    #: the kind of prediction, for verbs that need one kind rather than one task: "label" (one per text: the
    #: monitor's classifier, the answer step's intent model), "tags" (one per word: the monitor's tagger), "text"
    predicts: str = "label"
    #: the files it claims without --task (`claims_file`), in a few words (the --task help)
    claims_hint: str = ""
    #: the task's own training options (a stepwise.config.TaskOptions model): TrainConfig composes them beside
    #: the shared ones, so each is a flag and a --config key; another task's run refuses them
    options_model: type | None = None
    #: a module adding verbs of the task's own to the command line (add_parsers(sub, fmt) and HANDLERS), or None
    cli: str | None = None
    #: knobs of a trained model that `predict`/`evaluate` may change (a pydantic model; its fields become their
    #: flags, validated by it): an editor's keep bias
    inference_model: type | None = None

    def __init__(self, labels: list[str], **options: Any) -> None:
        check_classes(labels)
        self.labels = list(labels)
        self.label_to_id = {label: i for i, label in enumerate(self.labels)}
        self.options = options

    #: hyperparameters `stepwise search` adds to its default space for this task (name → spec, as in a space
    #: file: {"low", "high", "log", "step"} or {"choices"})
    search_space: dict[str, dict[str, Any]] = {}

    @classmethod
    def claims_file(cls, path: str, input_format: str | None) -> bool:
        """Whether a training file given without --task is this task's data (a tagger claims CoNLL files); when
        no task claims it, the first registered one (the classifier) takes it."""
        return False

    @classmethod
    def check_options(cls, config: Any, objective: str) -> None:
        """Refuse an option value this task cannot honour with this objective, before anything is read."""
        return None

    @classmethod
    def cleans_labels(cls, config: Any) -> bool:
        """Whether `clean_labels` runs on the training data with these options (a tagger's --no-repair)."""
        return True

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

    def training_hooks(self, config: Any) -> Any:
        """What this task adds to the fine-tuning recipe with these options (stepwise.tasks.hooks)."""
        from stepwise.tasks.hooks import TrainingHooks

        return TrainingHooks()

    @classmethod
    def options_from_run(cls, options: dict[str, Any]) -> dict[str, Any]:
        """A trained run's task options for a run that starts from it (rl, distill, prune, --init-from); what
        was fitted to the starting model alone is left out."""
        return options

    def step_inputs(self, config: Any, tokenizer: Any, precision: str) -> Any:
        """Training inputs made on the fly from the current model (`inputs(model, feats)`, a seeded `rng`), or
        None: the features as encoded (a refiner's previous predictions are the loop's default)."""
        return None

    def gold(self, examples: list[Example]) -> list[Any]:
        """What `metrics` compares predictions with (an editor also needs the source sentence)."""
        return [ex.label for ex in examples]

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

    @abstractmethod
    def confidence(self, probs: Any) -> float:
        """The model's own score of a prediction, used to stop early and to keep the best step."""

    def hf_export_note(self) -> str:
        """What an export to Hugging Face's format leaves out of this run, for its README ("" when nothing)."""
        return ""

    def units(self, features: list[Feature]) -> int:
        """How many examples (sentences) a list of features covers, for throughput."""
        return len({f.get("_example", i) for i, f in enumerate(features)})
