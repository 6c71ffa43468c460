"""Sequence classification: one label per text, mean-pooled encoder, scikit-learn metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from stepwise.errors import StepwiseError
from stepwise.example import Example, Feature
from stepwise.tasks.base import Task, softmax
from stepwise.tasks.capabilities import PromptsLLMDefaults

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def _label_key(label: str) -> tuple[int, float | str]:
    """Numeric labels sort as numbers ("2" before "10"), the rest alphabetically."""
    try:
        return (0, float(label))
    except ValueError:
        return (1, label)


class ClassifyTask(PromptsLLMDefaults, Task):
    #: `stepwise demo --app classify` (the default: the first registered task's demo)
    demo = ("classify", "stepwise.tasks.classify.demo:run_demo", "financial headlines")
    summary = "a label per text"
    #: the small-data rule (stepwise.training.small_data) starts this task's head from a linear probe
    probe_head_on_small_data = True
    name = "classify"
    noun = "classifier"
    takes_text_pairs = True
    pooling = "mean"
    default_metric = "accuracy"
    metric_names = ("accuracy", "macro_f1", "micro_f1", "weighted_f1")
    rewards = ("accuracy", "loglik")
    data_hint = "a file of text and label columns (TSV, CSV or JSONL)"

    @classmethod
    def check_data(cls, examples: list[Example], path: str, fix: str | None = None) -> None:
        for ex in examples:
            if isinstance(ex.label, list) and isinstance(ex.text, str):
                raise StepwiseError("this file holds sentence pairs (corrections), not a label per text", path=path,
                                    line=ex.line, fix=fix or "add --task edit to train an editor on it")
            if isinstance(ex.label, list) or isinstance(ex.text, list):
                raise StepwiseError("this file holds a tag per word (CoNLL), not a label per text", path=path,
                                    line=ex.line, fix=fix or "add --task tag to train a tagger on it")

    @classmethod
    def collect_labels(cls, examples: list[Example]) -> list[str]:
        return sorted({str(ex.label) for ex in examples}, key=_label_key)

    def augment(self, examples: list[Example], rate: float, seed: int) -> list[Example]:
        import random

        from stepwise.tasks.edit.noise import augment_text

        rng = random.Random(seed)
        return [Example(augment_text(str(ex.text), rng, rate), ex.label, ex.line, ex.pair) for ex in examples]

    def check_labels(self, examples: list[Example], path: str) -> None:
        for ex in examples:
            if ex.label is not None and ex.label not in self.label_to_id:
                raise StepwiseError(f"label {ex.label!r} never appears in the training data "
                                    f"(known: {', '.join(self.labels)})", path=path, line=ex.line,
                                    fix="fix the label or add examples of it to the training file")

    def encode(self, tokenizer: PreTrainedTokenizerBase, examples: list[Example], max_length: int,
               with_labels: bool = True) -> list[Feature]:
        texts = [str(ex.text) for ex in examples]
        if any(ex.pair is not None for ex in examples):  # text pairs: segment A and B, with token type ids
            encoded = tokenizer(texts, [str(ex.pair or "") for ex in examples], truncation="longest_first",
                                max_length=max_length, return_attention_mask=False, return_token_type_ids=True)
            segments = encoded["token_type_ids"]
        else:
            encoded = tokenizer(texts, truncation=True, max_length=max_length, return_attention_mask=False,
                                return_token_type_ids=False)
            segments = None
        features: list[Feature] = []
        for i, (ex, row) in enumerate(zip(examples, encoded["input_ids"])):
            feature: Feature = {"input_ids": row, "_example": i}
            if segments is not None:
                feature["token_type_ids"] = segments[i]
            if with_labels:
                feature["labels"] = self.label_to_id[str(ex.label)]
            features.append(feature)
        return features

    def decode(self, logits: np.ndarray, batch: dict[str, np.ndarray]) -> list[np.ndarray]:
        return list(softmax(logits))

    def merge(self, examples: list[Example], features: list[Feature], probs: list[np.ndarray]) -> list[Any]:
        return probs

    def to_labels(self, probs: np.ndarray) -> str:
        return self.labels[int(np.argmax(probs))]

    # --- rewards (stepwise rl): the prediction is the actions (a label, tags); gold is its own perfect answer
    def perfect(self, gold: Any) -> Any:
        return gold

    def action_outcomes(self, features: list[Feature], **follow: Any) -> Any:
        return None

    # --- LLM prompts: a label is shown as its word (`label_words`); a reply must start with one ----
    def llm_gold(self, example: Example) -> Any:
        return self.label_to_id[str(example.label)]

    def llm_wrong(self, example: Example) -> Any:
        return (self.llm_gold(example) + 1) % len(self.labels)

    def llm_fallback(self, example: Example, shots: list[Example]) -> Any:
        """The majority label of the example's few-shot examples (a tie: the first label; zero-shot: label 0)."""
        return int(np.argmax(self.llm_fallback_output(None, example, shots)))

    def llm_fallback_output(self, ids: Any, example: Example, shots: list[Example]) -> Any:
        """The labels' shares among the few-shot examples (zero-shot: uniform): a guess, reported as one."""
        votes = np.zeros(len(self.labels), dtype=np.float32)
        for shot in shots:
            votes[self.llm_gold(shot)] += 1
        return votes / votes.sum() if votes.any() else np.full(len(self.labels), 1 / len(self.labels), np.float32)

    def llm_answer(self, ids: Any, example: Example) -> str:
        return self.word(self.labels[int(ids)])

    def llm_max_tokens(self, example: Example) -> int:
        return 4

    def llm_parse(self, reply: str, example: Example) -> Any | None:
        text = reply.strip().strip("\"'*:.-").strip().lower()
        words = sorted(((self.word(label).lower(), i) for i, label in enumerate(self.labels)), key=lambda w: -len(w[0]))
        for word, i in words:
            if text.startswith(word) and (len(text) == len(word) or not text[len(word)].isalnum()):
                return i
        return None

    def llm_output(self, ids: Any, example: Example) -> Any:
        return np.eye(len(self.labels), dtype=np.float32)[int(ids)]

    def slice_prediction(self, feature: Feature, example_ids: Any) -> Any:
        return example_ids

    def prev_ids(self, feature: Feature, ids: Any) -> list[int]:
        return [int(ids) + 1] * len(feature["input_ids"])

    def confidence(self, probs: np.ndarray) -> float:
        return float(np.max(probs))

    def prediction_record(self, example: Example, probs: np.ndarray) -> dict[str, Any]:
        record: dict[str, Any] = {"text": example.text}
        if example.pair is not None:
            record["text_pair"] = example.pair
        record |= {"label": self.to_labels(probs),
                                  "probs": {label: round(float(p), 6) for label, p in zip(self.labels, probs)}}
        if example.label is not None:
            record["gold"] = example.label
        return record

    def prediction_tsv(self, example: Example, probs: np.ndarray) -> str:
        return f"{example.text}\t{self.to_labels(probs)}\t{float(np.max(probs)):.6f}"

    def metrics(self, gold: list[str], pred: list[str]) -> dict[str, Any]:
        from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

        out: dict[str, Any] = {"accuracy": float(accuracy_score(gold, pred))}
        for average in ("macro", "micro", "weighted"):
            p, r, f, _ = precision_recall_fscore_support(gold, pred, labels=self.labels, average=average,
                                                         zero_division=0)
            out[f"{average}_f1"] = float(f)
            out[f"{average}_precision"] = float(p)
            out[f"{average}_recall"] = float(r)
        p, r, f, s = precision_recall_fscore_support(gold, pred, labels=self.labels, zero_division=0)
        out["per_class"] = {label: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                                    "support": int(s[i])} for i, label in enumerate(self.labels)}
        out["confusion_matrix"] = {"labels": self.labels,
                                   "matrix": confusion_matrix(gold, pred, labels=self.labels).tolist()}
        out["n"] = len(gold)
        return out

    def report_text(self, gold: list[str], pred: list[str]) -> str:
        from sklearn.metrics import classification_report, confusion_matrix, precision_recall_fscore_support

        text = classification_report(gold, pred, labels=self.labels, digits=4, zero_division=0)
        matrix = confusion_matrix(gold, pred, labels=self.labels)
        width = max(8, *(len(label) for label in self.labels)) + 2
        lines = ["confusion matrix (rows = gold, columns = predicted)",
                 " " * width + "".join(f"{label:>{width}}" for label in self.labels)]
        for label, row in zip(self.labels, matrix):
            lines.append(f"{label:>{width}}" + "".join(f"{v:>{width}}" for v in row))
        micro = precision_recall_fscore_support(gold, pred, labels=self.labels, average="micro", zero_division=0)
        return f"{text}\n   micro avg F1 {micro[2]:.4f}\n\n" + "\n".join(lines) + "\n"
