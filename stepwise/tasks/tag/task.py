"""Token classification (NER): a tag per word, first-sub-token labels, windows for long sentences."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Optional

import numpy as np
from pydantic import Field, field_validator

from stepwise.config import TaskOptions
from stepwise.errors import StepwiseError
from stepwise.example import IGNORE_INDEX, UNLABELED, Example, Feature
from stepwise.tasks.base import Task, softmax
from stepwise.tasks.capabilities import PromptsLLMDefaults
from stepwise.tasks.tag.conll import detect_scheme, is_conll, repair
from stepwise.tasks.tag.words import SHAPES, windows, word_shape, words_of

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

class WordShapeOption(TaskOptions):
    """The learned word-shape embedding, an option of every task that tags words (a tagger, an editor)."""

    casing: Optional[bool] = Field(None, description="tag, edit: add a learned word-shape embedding (default: on)")


class TagOptions(WordShapeOption):
    """A tagger's own training options (flags of `stepwise train`, keys of --config)."""

    repair: bool = Field(True, description="tag: turn an I- tag after O or another type into B- (counted)")
    strict: bool = Field(False, description="tag: seqeval strict mode (entities must be well-formed)")
    doc_context: Optional[Literal["head", "model"]] = Field(
        None, description="tag: a second step that sees, per word, the step-1 tags of the same word form elsewhere "
        "in its document (CoNLL -DOCSTART- documents). head: step 1 is the plain tagger, step 2 a small head "
        "fitted on the dev split's step-1 probabilities after training (seconds; dev needs documents). model: "
        "the tagger itself reads a document input, trained on out-of-fold step-1 tags of 2 fold taggers")
    doc_fold_epochs: Optional[float] = Field(None, gt=0, json_schema_extra={"searched": False},
                                             description="tag, --doc-context model: epochs of the two fold "
                                             "taggers that make the out-of-fold step-1 tags (default: --epochs)")

    @field_validator("doc_context", mode="before")
    @classmethod
    def _doc_context_flag(cls, value: Any) -> Any:
        """Configs written before the head existed say true/false: true was the document-input model."""
        return {True: "model", False: None}.get(value, value) if isinstance(value, bool) else value


class TagTask(PromptsLLMDefaults, Task):
    name = "tag"
    noun = "tagger"
    summary = "a tag per word"
    claims_hint = "CoNLL files (.conll/.bio/.iob/.iobes)"
    predicts = "tags"
    options_model = TagOptions
    pooling = "token"
    default_metric = "f1"
    metric_names = ("f1", "precision", "recall", "macro_f1", "token_accuracy")
    read_format = "conll"  # CoNLL-2003 itself is shipped as .txt
    rewards = ("entity_f1", "accuracy", "bleu", "rouge_l", "loglik")
    output_formats = ("jsonl", "tsv", "conll")
    takes_token_lists = True
    takes_documents = True
    #: a second step that sees the step-1 tags of the same word form elsewhere in the document
    doc_context: bool = False
    #: --doc-context head: step 2's fitted weights (stepwise.tasks.tag.doc_head); subclasses have none
    doc_head: dict[str, Any] | None = None

    def __init__(self, labels: list[str], *, scheme: str = "BIO", casing: bool = True, strict: bool = False,
                 doc_context: bool = False, doc_head: dict[str, Any] | None = None, **options: Any) -> None:
        if doc_context:
            options["doc_context"] = True  # saved only when on: older runs' options stay as they were
        if doc_head:
            options["doc_head"] = doc_head
        super().__init__(labels, scheme=scheme, casing=casing, strict=strict, **options)
        self.scheme = scheme
        self.casing = casing
        self.strict = strict
        self.doc_context = doc_context
        self.doc_head = doc_head

    search_space = {"casing": {"choices": [True, False]}}  # the word-shape embedding on or off

    @classmethod
    def claims_file(cls, path: str, input_format: str | None) -> bool:
        return is_conll(path, input_format)

    @property
    def extra_inputs(self) -> dict[str, int]:
        from stepwise.tasks.tag.document import DOC, vocabulary_size

        inputs = {"shape_ids": SHAPES} if self.casing else {}
        if self.doc_context:
            inputs[DOC] = vocabulary_size(len(self.entity_types))
        return inputs

    @classmethod
    def options_from_config(cls, config: Any, train_examples: list[Example]) -> dict[str, Any]:
        scheme = detect_scheme([ex.label for ex in train_examples if ex.label])
        options = {"scheme": scheme, "casing": True if config.casing is None else config.casing,
                   "strict": config.strict}
        if getattr(config, "doc_context", None) == "model":  # the head's weights are added after training
            options["doc_context"] = True
        return options

    def training_hooks(self, config: Any) -> Any:
        if not getattr(config, "doc_context", None):
            return super().training_hooks(config)
        from stepwise.tasks.tag.doc_context import DocContextHooks

        return DocContextHooks(config.doc_context)

    def hf_export_note(self) -> str:
        if not self.doc_head:
            return ""
        from stepwise.tasks.tag.doc_head import HF_EXPORT_NOTE

        return HF_EXPORT_NOTE

    @classmethod
    def cleans_labels(cls, config: Any) -> bool:
        return config.repair

    @classmethod
    def options_from_run(cls, options: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in options.items() if k != "doc_head"}  # fitted for the starting model, not this one

    data_hint = "a CoNLL file (token and tag columns, a blank line between sentences)"

    @classmethod
    def check_data(cls, examples: list[Example], path: str, fix: str | None = None) -> None:
        for ex in examples:
            if ex.label is not None and not (isinstance(ex.label, list) and isinstance(ex.text, list)):
                raise StepwiseError("this file holds one label per text, not a tag per word", path=path,
                                    line=ex.line, fix=fix or "give a CoNLL file (token and tag columns), or use "
                                    "--task classify")

    @classmethod
    def collect_labels(cls, examples: list[Example]) -> list[str]:
        tags = {t for ex in examples for t in (ex.label or [])}
        return ["O"] + sorted(tags - {"O"}, key=lambda t: (t[2:], t[:2]))

    def augment(self, examples: list[Example], rate: float, seed: int) -> list[Example]:
        """Spelling and casing noise only: the words stay where their tags are."""
        import random

        from stepwise.tasks.edit.noise import augment_tokens

        rng = random.Random(seed)
        return [Example(augment_tokens(words_of(ex), rng, rate), ex.label, ex.line) for ex in examples]

    def check_labels(self, examples: list[Example], path: str) -> None:
        for ex in examples:
            for tag in ex.label or []:
                if tag not in self.label_to_id:
                    raise StepwiseError(f"tag {tag!r} never appears in the training data", path=path, line=ex.line,
                                        fix="fix the tag or add examples of it to the training file")

    @classmethod
    def clean_labels(cls, examples: list[Example], options: dict[str, Any]) -> int:
        """Repair invalid gold sequences (I- after O or another type) in place; returns the count."""
        fixes = 0
        for ex in examples:
            if ex.label:
                ex.label, n = repair(list(ex.label), options.get("scheme", "BIO"))
                fixes += n
        return fixes

    # --- encoding: words → sub-tokens, label on the first sub-token, windows past max_length ----------------
    def encode(self, tokenizer: PreTrainedTokenizerBase, examples: list[Example], max_length: int,
               with_labels: bool = True) -> list[Feature]:
        word_lists = [words_of(ex) for ex in examples]
        # whole sentences, windowed below: verbose=False keeps transformers' "longer than the specified maximum
        # ... will result in indexing errors" warning, untrue here, off the user's screen
        encoded = tokenizer(word_lists, is_split_into_words=True, add_special_tokens=False,
                            return_attention_mask=False, return_token_type_ids=False, verbose=False)
        budget = max_length - 2
        features: list[Feature] = []
        for ei, (ex, words) in enumerate(zip(examples, word_lists)):
            pieces: list[list[int]] = [[] for _ in words]
            for token_id, word in zip(encoded["input_ids"][ei], encoded.word_ids(ei)):
                if word is not None:
                    pieces[word].append(token_id)
            pieces = [(p or [tokenizer.unk_token_id])[:budget] for p in pieces]
            tags = ex.label if with_labels and ex.label else None
            for start, end in windows([len(p) for p in pieces], budget):
                features.append(self._window(tokenizer, ei, start, end, pieces, words, tags))
        return features

    def _window(self, tokenizer: PreTrainedTokenizerBase, example: int, start: int, end: int,
                pieces: list[list[int]], words: list[str], tags: list[str] | None) -> Feature:
        ids, first, labels, shapes = [tokenizer.cls_token_id], [0], [IGNORE_INDEX], [0]
        for w in range(start, end):
            ids.extend(pieces[w])
            first.extend([1] + [0] * (len(pieces[w]) - 1))
            label = self.label_to_id.get(tags[w], IGNORE_INDEX) if tags else IGNORE_INDEX  # editor: rare edits
            labels.extend([label] + [IGNORE_INDEX] * (len(pieces[w]) - 1))
            shapes.extend([word_shape(words[w])] * len(pieces[w]))
        ids.append(tokenizer.sep_token_id)
        first.append(0)
        labels.append(IGNORE_INDEX)
        shapes.append(0)
        feature: Feature = {"input_ids": ids, "word_mask": first, "_example": example, "_start": start}
        if tags:
            feature["labels"] = labels
        if self.casing:
            feature["shape_ids"] = shapes
        if self.doc_context:
            feature["doc_ids"] = [0] * len(ids)  # "no context yet": step 1 (stepwise.tasks.tag.document)
        return feature

    def mark_unlabeled(self, features: list[Feature]) -> list[Feature]:
        """A word's first sub-token carries its tag: there the student matches the teacher."""
        return [{**f, "labels": [UNLABELED if first else IGNORE_INDEX for first in f["word_mask"]]} for f in features]

    def decode(self, logits: np.ndarray, batch: dict[str, np.ndarray]) -> list[np.ndarray]:
        probs = softmax(logits)
        mask = np.asarray(batch["word_mask"]).astype(bool)
        return [probs[i][mask[i]] for i in range(probs.shape[0])]

    def merge(self, examples: list[Example], features: list[Feature], probs: list[np.ndarray]) -> list[np.ndarray]:
        """Average the word probabilities of overlapping windows back into one array per sentence."""
        total = [np.zeros((len(words_of(ex)), len(self.labels)), dtype=np.float32) for ex in examples]
        count = [np.zeros((len(words_of(ex)), 1), dtype=np.float32) for ex in examples]
        for feature, p in zip(features, probs):
            ei, start = feature["_example"], feature["_start"]
            total[ei][start:start + len(p)] += p
            count[ei][start:start + len(p)] += 1
        return [t / np.maximum(c, 1) for t, c in zip(total, count)]

    def to_labels(self, probs: np.ndarray) -> list[str]:
        tags = [self.labels[i] for i in np.argmax(probs, axis=-1)]
        return repair(tags, self.scheme)[0]

    def prediction_ids(self, probs: np.ndarray) -> np.ndarray:
        """Repaired tags as ids, so the next step sees a well-formed sequence."""
        return np.array([self.label_to_id[t] for t in self.to_labels(probs)], dtype=np.int64)

    # --- rewards (stepwise rl): the prediction is the actions (a label, tags); gold is its own perfect answer
    def perfect(self, gold: Any) -> Any:
        return gold

    def action_outcomes(self, features: list[Feature], **follow: Any) -> Any:
        return None

    # --- LLM prompts: the words, then one tag per word; a reply must have as many known tags -------
    def llm_text(self, example: Example) -> str:
        return " ".join(words_of(example))

    def llm_gold(self, example: Example) -> Any:
        return np.array([self.label_to_id[t] for t in example.label], dtype=np.int64)

    def llm_wrong(self, example: Example) -> Any:
        outside = self.label_to_id.get("O", 0)
        return np.full(len(words_of(example)), outside, dtype=np.int64)

    def llm_fallback(self, example: Example, shots: list[Example]) -> Any:
        return self.llm_wrong(example)  # all O

    def llm_fallback_output(self, ids: Any, example: Example, shots: list[Example]) -> Any:
        """Each word: the tags' shares among the few-shot examples' words (zero-shot: uniform), O kept on top
        so the reported tag is the fallback's."""
        prior = np.ones(len(self.labels), dtype=np.float32)
        for shot in shots:
            for tag in shot.label or []:
                if tag in self.label_to_id:
                    prior[self.label_to_id[tag]] += 1
        outside = self.label_to_id.get("O", 0)
        prior[outside] = max(prior[outside], prior.max() + 1)
        return np.tile(prior / prior.sum(), (len(ids), 1))

    def llm_answer(self, ids: Any, example: Example) -> str:
        return " ".join(self.labels[int(i)] for i in ids)

    def llm_parse(self, reply: str, example: Example) -> Any | None:
        lines = reply.strip().splitlines()
        tags = lines[0].split() if lines else []
        if len(tags) != len(words_of(example)) or any(t not in self.label_to_id for t in tags):
            return None
        return np.array([self.label_to_id[t] for t in tags], dtype=np.int64)

    def llm_max_tokens(self, example: Example) -> int:
        return 4 * len(words_of(example)) + 4

    def llm_output(self, ids: Any, example: Example) -> Any:
        return np.eye(len(self.labels), dtype=np.float32)[np.asarray(ids, dtype=np.int64)]

    def slice_prediction(self, feature: Feature, example_ids: np.ndarray) -> np.ndarray:
        start = feature["_start"]
        return example_ids[start:start + sum(feature["word_mask"])]

    def prev_ids(self, feature: Feature, ids: np.ndarray) -> list[int]:
        """Every sub-token of a word carries the word's previous tag; [CLS]/[SEP] carry none."""
        out, word = [], -1
        for first in feature["word_mask"]:
            word += first
            out.append(int(ids[word]) + 1 if word >= 0 else 0)
        out[-1] = 0
        return out

    def confidence(self, probs: np.ndarray) -> float:
        return float(np.mean(np.max(probs, axis=-1))) if len(probs) else 1.0

    # --- document context: step 2 sees the step-1 tags of each word form elsewhere in its document ------
    @property
    def entity_types(self) -> list[str]:
        """Entity types in label order (PER, LOC, ...): the document-context vocabulary after O."""
        return list(dict.fromkeys(label.split("-", 1)[-1] for label in self.labels if label != "O"))

    def doc_context_ids(self, examples: list[Example], predictions: list[Any | None]) -> list[list[int]]:
        """Per example, per word: the context id from the other occurrences of its word form in the
        document (`predictions`: each example's tag ids, or None); see stepwise.tasks.tag.document."""
        from stepwise.tasks.tag.document import context_ids

        types = {kind: k + 1 for k, kind in enumerate(self.entity_types)}
        kind = np.array([0 if label == "O" else types[label.split("-", 1)[-1]] for label in self.labels])
        classes = [None if p is None else kind[np.asarray(p, dtype=np.int64)].tolist() for p in predictions]
        return context_ids([words_of(ex) for ex in examples], [ex.doc for ex in examples], classes)

    def doc_ids(self, feature: Feature, word_ids: list[int]) -> list[int]:
        """Per-token context ids of a window from its example's per-word ids; every sub-token of a word
        carries the word's id, [CLS]/[SEP] carry 0."""
        start, out, word = feature["_start"], [], -1
        for first in feature["word_mask"]:
            word += first
            out.append(int(word_ids[start + word]) if word >= 0 else 0)
        out[-1] = 0
        return out

    def multi_step(self, input_names: Any) -> bool:
        from stepwise.tasks.tag.document import DOC

        return DOC in input_names or bool(self.doc_head) or super().multi_step(input_names)

    def policy(self, backend: Any, tokenizer: Any, examples: list[Example], features: list[Feature], *,
               batch_size: int, max_length: int) -> Any:
        """A model with the document-context input (stepwise.tasks.tag.document) or a document head
        (stepwise.tasks.tag.doc_head) predicts in two steps."""
        from stepwise.tasks.tag.document import DOC, DocumentPolicy

        if self.doc_head:
            from stepwise.tasks.tag.doc_head import DocHead, DocHeadPolicy

            return DocHeadPolicy(backend, self, examples, features, batch_size=batch_size,
                                 pad_id=tokenizer.pad_token_id, head=DocHead.from_dict(self.doc_head), words=words_of)
        if DOC in backend.input_names:
            return DocumentPolicy(backend, self, examples, features, batch_size=batch_size,
                                  pad_id=tokenizer.pad_token_id)
        return super().policy(backend, tokenizer, examples, features, batch_size=batch_size, max_length=max_length)

    # --- output ---------------------------------------------------------------------------------
    def entities(self, words: list[str], tags: list[str]) -> list[dict[str, Any]]:
        """Entity spans over word positions; `end` is exclusive, like a Python slice: words[start:end]."""
        from seqeval.metrics.sequence_labeling import get_entities

        return [{"type": kind, "start": start, "end": last + 1, "text": " ".join(words[start:last + 1])}
                for kind, start, last in get_entities(tags)]

    def empty_record(self, example: Example) -> dict[str, Any]:
        return {"tokens": [], "tags": [], "entities": [], "note": "no text"}

    def prediction_record(self, example: Example, probs: np.ndarray) -> dict[str, Any]:
        words, tags = words_of(example), self.to_labels(probs)
        record: dict[str, Any] = {"tokens": words, "tags": tags, "entities": self.entities(words, tags)}
        if example.label:
            record["gold"] = list(example.label)
        return record

    def prediction_tsv(self, example: Example, probs: np.ndarray) -> str:
        words, tags = words_of(example), self.to_labels(probs)
        gold = example.label or [None] * len(words)
        lines = [f"{w}\t{t}" + (f"\t{g}" if g else "") for w, t, g in zip(words, tags, gold)]
        return "\n".join(lines) + "\n"

    # --- scoring (seqeval semantics: entity-level, micro-averaged) ------------------------------
    def _seqeval_options(self) -> dict[str, Any]:
        from seqeval.scheme import IOB2, IOBES

        return {"mode": "strict", "scheme": IOBES if self.scheme == "IOBES" else IOB2} if self.strict else {}

    def _report(self, gold: list[list[str]], pred: list[list[str]]) -> dict[str, Any]:
        from seqeval.metrics import classification_report

        return classification_report(gold, pred, zero_division=0, output_dict=True, **self._seqeval_options())

    def metrics(self, gold: list[list[str]], pred: list[list[str]]) -> dict[str, Any]:
        report = self._report(gold, pred)
        micro, macro = report.pop("micro avg"), report.pop("macro avg")
        report.pop("weighted avg", None)
        tokens = sum(len(g) for g in gold)
        correct = sum(a == b for g, p in zip(gold, pred) for a, b in zip(g, p))
        return {"f1": float(micro["f1-score"]), "precision": float(micro["precision"]),
                "recall": float(micro["recall"]), "macro_f1": float(macro["f1-score"]),
                "token_accuracy": correct / max(tokens, 1),
                "per_type": {k: {"precision": float(v["precision"]), "recall": float(v["recall"]),
                                 "f1": float(v["f1-score"]), "support": int(v["support"])} for k, v in report.items()},
                "n": len(gold)}

    def report_text(self, gold: list[list[str]], pred: list[list[str]]) -> str:
        from seqeval.metrics import classification_report

        m = self.metrics(gold, pred)
        text = classification_report(gold, pred, digits=4, zero_division=0, **self._seqeval_options())
        return (f"{text}\n"
                f"entity-level micro F1 {m['f1']:.4f} (P {m['precision']:.4f}, R {m['recall']:.4f}); "
                f"token accuracy {m['token_accuracy']:.4f}; mode {'strict' if self.strict else 'conlleval'}\n")
