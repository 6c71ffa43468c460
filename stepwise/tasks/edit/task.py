"""Iterative text editing (grammatical error correction): tag each token with an edit, apply, repeat.

The model is a token tagger over `$START` + the sentence's words; its labels are edit tags (see
`stepwise.tasks.edit.tags`). Prediction is a loop: tag the current sentence, apply the edits, tag the new
sentence, until nothing changes or `steps` passes are done. Applying one correction changes what the
next pass sees, which is where several steps pay.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
from pydantic import Field

from stepwise.config import TaskOptions
from stepwise.errors import StepwiseError
from stepwise.example import Example, Feature
from stepwise.tasks.base import Task
from stepwise.tasks.capabilities import PromptsLLMDefaults
from stepwise.tasks.edit.pairs import read_pairs
from stepwise.tasks.edit.tags import KEEP, START, Speller, apply_tags, edit_ops, first_tags, tag_vocabulary
from stepwise.tasks.tag.task import TagTask, WordShapeOption
from stepwise.tasks.tag.words import words_of

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from stepwise.backends import Backend

@lru_cache(maxsize=1)
def speller() -> Speller:
    """One spell checker per process (loading its dictionary takes a moment)."""
    return Speller()


def references(label: Any) -> list[str]:
    return [] if label is None else [label] if isinstance(label, str) else list(label)


def split_punctuation(tokens: list[str], known: set[str]) -> list[str]:
    """Whitespace tokens with a final . , ! ? ; : split off, as JFLEG and CoNLL are tokenized (a token the
    source already has, e.g. "U.S.", stays whole)."""
    out = []
    for token in tokens:
        if len(token) > 1 and token[-1] in ".,!?;:" and token not in known:
            out += [token[:-1], token[-1]]
        else:
            out.append(token)
    return out


def ops_for(source: list[str], target: list[str]) -> list[list[str]]:
    """Edit operations per position, cached: the vocabulary, the labels and own-output retagging all need them."""
    return _ops(tuple(source), tuple(target))


@lru_cache(maxsize=1 << 18)
def _ops(source: tuple[str, ...], target: tuple[str, ...]) -> list[list[str]]:
    return edit_ops(source, target, speller())


def training_pairs(examples: list[Example], stages: int = 2) -> list[tuple[int, list[str], list[str]]]:
    """(example index, source words, target words) to learn from: every reference, and the half-corrected
    sentences a second pass starts from (the first operations applied), so later passes are trained too."""
    pairs = []
    for i, ex in enumerate(examples):
        source = words_of(ex)
        for ref in references(ex.label):
            target, current = ref.split(), source
            for _ in range(stages):
                pairs.append((i, current, target))
                nxt = apply_tags(current, first_tags(ops_for(current, target)), speller())
                if nxt == target or nxt == current:
                    break
                current = nxt
    return pairs


class EditOptions(WordShapeOption):
    """An editor's own training options (flags of `stepwise train` and `stepwise rl`, keys of --config)."""

    rl_passes: int = Field(1, ge=1, le=10, description="rl, edit: the reward scores the sentence after this many "
                           "passes: the sampled pass, then the current model's greedy passes (1: the sampled pass "
                           "alone)")
    own_outputs: float = Field(0.0, ge=0, le=1, description="edit: share of training batches whose sentences are "
                               "replaced by the model's own one-pass output (tagged against the same target), so "
                               "later passes learn to fix what the model leaves; 0 = off")


class EditInference(TaskOptions):
    """An editor's inference knobs (flags of `predict` and `evaluate`; attributes of the loaded task)."""

    keep_bias: Optional[float] = Field(None, ge=-1, le=1, description="editor: added to the probability of keeping a "
                                       "word, in [-1, 1] (higher: fewer, surer edits; negative: more edits)")
    min_edit_prob: Optional[float] = Field(None, ge=0, le=1, description="editor: apply an edit only at this "
                                           "probability or above")


class EditTask(PromptsLLMDefaults, Task):
    name = "edit"
    noun = "editor"
    summary = "correct sentences"
    predicts = "text"
    options_model = EditOptions
    inference_model = EditInference
    pooling = "token"
    default_metric = "gleu"
    metric_names = ("gleu", "f0.5", "precision", "recall", "bleu")
    read_format = "tsv"
    rewards = ("gleu", "bleu")
    output_formats = ("text", "jsonl", "tsv")
    iterative = True
    default_steps = 5
    takes_token_lists = False  # a sentence to correct is a string
    takes_documents = False
    #: what a refused capability's one-line error suggests instead (stepwise.tasks.capabilities.require)
    refusals = {"Augments": "an editor's pairs are already noisy text: make more with `stepwise noise --copies N`"}
    data_hint = "sentence pairs (source<TAB>target TSV, JSONL {\"source\", \"target\"}, or --train-target files)"

    def __init__(self, labels: list[str], *, casing: bool = True, keep_bias: float = 0.0, min_edit_prob: float = 0.0,
                 **options: Any) -> None:
        super().__init__(labels, casing=casing, keep_bias=keep_bias, min_edit_prob=min_edit_prob, **options)
        self.casing, self.keep_bias, self.min_edit_prob = casing, keep_bias, min_edit_prob
        #: a tagger over the edit tags: it encodes $START + words in windows, decodes and merges them
        self.tagger = TagTask(labels, scheme="BIO", casing=casing)

    @property
    def extra_inputs(self) -> dict[str, int]:
        return self.tagger.extra_inputs

    @classmethod
    def options_from_config(cls, config: Any, train_examples: list[Example]) -> dict[str, Any]:
        return {"casing": True if config.casing is None else config.casing}

    @classmethod
    def check_options(cls, config: Any, objective: str) -> None:
        if config.rl_passes > 1 and objective != "reinforce":
            raise StepwiseError("--rl-passes is for `stepwise rl`: it shapes the reward", fix="drop --rl-passes")

    # --- data ---------------------------------------------------------------------------------
    @classmethod
    def read_file(cls, path: str, *, targets: list[str] | None = None, **read_options: Any) -> list[Example]:
        return read_pairs(path, targets=targets, **read_options)

    @classmethod
    def check_data(cls, examples: list[Example], path: str, fix: str | None = None) -> None:
        for ex in examples:
            if isinstance(ex.label, list) and isinstance(ex.text, list):
                raise StepwiseError("this file holds a tag per word (CoNLL), not sentence pairs", path=path,
                                    line=ex.line, fix=fix or "give source<TAB>target lines")
        labeled = [ex for ex in examples if ex.label]
        if labeled and all(len(r.split()) == 1 < len(words_of(ex)) for ex in labeled for r in references(ex.label)):
            raise StepwiseError("this file holds a label per text, not sentence pairs", path=path,
                                line=labeled[0].line, fix=fix or "train a classifier with --task classify, or give "
                                "source<TAB>target lines")
        if labeled and all(r.split() == words_of(ex) for ex in labeled for r in references(ex.label)):
            raise StepwiseError("every target is identical to its source: there is no edit to learn", path=path,
                                fix="give corrected targets (e.g. make pairs with `stepwise noise`)")

    @classmethod
    def collect_labels(cls, examples: list[Example]) -> list[str]:
        return cls.vocabulary(examples)[0]

    @classmethod
    def vocabulary(cls, examples: list[Example]) -> tuple[list[str], dict[str, float]]:
        return tag_vocabulary(ops_for(s, t) for _, s, t in training_pairs(examples))

    @classmethod
    def data_notes(cls, train: list[Example]) -> dict[str, Any]:
        coverage = cls.vocabulary(train)[1]
        return {"edit_tags": {k: round(v, 4) if isinstance(v, float) else v for k, v in coverage.items()}}

    @classmethod
    def stratum(cls, label: Any) -> str:
        return "pair"

    def check_labels(self, examples: list[Example], path: str) -> None:
        """Any correction is a valid target: edits outside the vocabulary are left out of the loss."""

    @classmethod
    def clean_labels(cls, examples: list[Example], options: dict[str, Any]) -> int:
        return 0

    def gold(self, examples: list[Example]) -> list[Any]:
        return [(words_of(ex), [r.split() for r in references(ex.label)]) for ex in examples]

    def perfect(self, gold: Any) -> Any:
        return " ".join(gold[1][0]) if gold[1] else " ".join(gold[0])

    def action_outcomes(self, features: list[Feature], *, model: Any = None, tokenizer: Any = None, passes: int = 1,
                        precision: str = "fp32", max_length: int = 128, batch_size: int = 64,
                        config: Any = None) -> Any:
        """RL: sampled tags → the sentence they make from the pair's current state, scored against the source's
        references (every reference, not just the one the pair was built from). With `passes` > 1 (a run's
        --rl-passes, from `config`) the sentence is what `model`'s greedy passes then make of it, as at
        prediction time: the reward of an edit counts what it lets the later passes do."""
        if config is not None:
            passes, max_length, batch_size = config.rl_passes, config.max_length, config.eval_batch_size
        table = {f["pair_id"]: f for f in features}

        def outcomes(pair_ids: list[int], rows: list[list[str]]) -> tuple[list[str], list[Any]]:
            preds, golds = [], []
            for pair_id, tags in zip(pair_ids, rows):
                f = table[pair_id]
                state = f["_state"]
                full = [KEEP] * (len(state) + 1)
                full[f["_start"]:f["_start"] + len(tags)] = tags  # a window covers part of $START + words
                preds.append(self.apply(state, full))
                golds.append(f["_gold"])
            if passes > 1:
                preds = self._later_passes(model, tokenizer, preds, passes - 1, precision, max_length, batch_size)
            return [" ".join(p) for p in preds], golds

        return outcomes

    def _later_passes(self, model: Any, tokenizer: Any, sentences: list[list[str]], passes: int, precision: str,
                      max_length: int, batch_size: int) -> list[list[str]]:
        from stepwise.backends.torch import TorchBackend
        from stepwise.refine.engine import refine
        from stepwise.tasks.edit.policy import EditPolicy

        examples = [Example(list(s)) for s in sentences]
        policy = EditPolicy(TorchBackend(model, precision), self, tokenizer, examples, batch_size=batch_size,
                            max_length=max_length)
        result = refine(policy, len(examples), steps=passes, initial=[tuple(s) for s in sentences])
        return [list(p) for p in result.predictions]

    # --- encoding: $START + words, the first operation of each position as its label ----------
    def encode(self, tokenizer: PreTrainedTokenizerBase, examples: list[Example], max_length: int,
               with_labels: bool = True) -> list[Feature]:
        if not with_labels or not any(ex.label for ex in examples):
            proxies = [Example([START, *words_of(ex)], None, ex.line) for ex in examples]
            return self.tagger.encode(tokenizer, proxies, max_length, with_labels=False)
        pairs = training_pairs(examples)
        features = self.encode_pairs(tokenizer, [(s, t) for _, s, t in pairs], max_length)
        for f in features:  # what RL needs to turn sampled tags into a sentence and score it
            ex = examples[pairs[f["pair_id"]][0]]
            f["_example"] = pairs[f["pair_id"]][0]
            f["_gold"] = (words_of(ex), [r.split() for r in references(ex.label)])
        return features

    def encode_pairs(self, tokenizer: PreTrainedTokenizerBase, pairs: list[tuple[list[str], list[str]]],
                     max_length: int) -> list[Feature]:
        """Features of (current sentence, target) pairs: each position labeled with its first edit."""
        proxies = [Example([START, *s], first_tags(ops_for(s, t)), 0) for s, t in pairs]
        features = self.tagger.encode(tokenizer, proxies, max_length, with_labels=True)
        for f in features:
            k = f["pair_id"] = f["_example"]
            f["_state"], f["_target"] = list(pairs[k][0]), list(pairs[k][1])
        return features

    def step_inputs(self, config: Any, tokenizer: Any, precision: str) -> Any:
        """`--own-outputs S`: a share S of the batches trains on the model's own pass-1 output."""
        if not config.own_outputs:
            return None
        from stepwise.tasks.edit.training import OwnOutputs

        return OwnOutputs(self, tokenizer, share=config.own_outputs, max_length=config.max_length,
                          precision=precision, seed=config.seed)

    def merge(self, examples: list[Example], features: list[Feature], probs: list[np.ndarray]) -> list[np.ndarray]:
        proxies = [Example([START, *words_of(ex)], None, ex.line) for ex in examples]
        return self.tagger.merge(proxies, features, probs)

    def decode(self, logits: np.ndarray, batch: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.tagger.decode(logits, batch)

    def mark_unlabeled(self, features: list[Feature]) -> list[Feature]:
        return self.tagger.mark_unlabeled(features)

    def slice_prediction(self, feature: Feature, example_ids: Any) -> Any:
        return self.tagger.slice_prediction(feature, example_ids)

    def prev_ids(self, feature: Feature, ids: Any) -> list[int]:
        return self.tagger.prev_ids(feature, ids)

    # --- one pass: choose a tag per position, with the usual precision knobs -------------------
    def choose(self, probs: np.ndarray) -> tuple[list[str], float]:
        """Tags for one sentence and the pass's confidence (mean probability of the tags chosen).

        `keep_bias` is added to $KEEP's probability; an edit below `min_edit_prob` becomes $KEEP.
        """
        p = np.array(probs, dtype=np.float32, copy=True)
        keep = self.label_to_id[KEEP]
        p[:, keep] += self.keep_bias
        ids = np.argmax(p, axis=-1)
        chosen = probs[np.arange(len(ids)), ids]
        ids = np.where((ids != keep) & (chosen < self.min_edit_prob), keep, ids)
        return [self.labels[int(i)] for i in ids], float(np.mean(np.max(probs, axis=-1))) if len(ids) else 1.0

    def policy(self, backend: Backend, tokenizer: Any, examples: list[Example], features: list[Feature], *,
               batch_size: int, max_length: int) -> Any:
        from stepwise.tasks.edit.policy import EditPolicy

        return EditPolicy(backend, self, tokenizer, examples, batch_size=batch_size, max_length=max_length)

    def initial_states(self, examples: list[Example]) -> list[Any]:
        return [tuple(words_of(ex)) for ex in examples]

    def apply(self, tokens: list[str], tags: list[str]) -> list[str]:
        return apply_tags(tokens, tags, speller())

    # --- LLM prompts: a sentence in, the corrected sentence out (one line, tokenized like the data) --
    def llm_text(self, example: Example) -> str:
        return " ".join(words_of(example))

    def llm_gold(self, example: Example) -> Any:
        refs = references(example.label)
        return tuple(refs[0].split()) if refs else tuple(words_of(example))

    def llm_wrong(self, example: Example) -> Any:
        return tuple(words_of(example))

    def llm_fallback(self, example: Example, shots: list[Example]) -> Any:
        return tuple(words_of(example))  # the source: no edits

    def llm_answer(self, ids: Any, example: Example) -> str:
        return " ".join(ids)

    def llm_parse(self, reply: str, example: Example) -> Any | None:
        lines = reply.strip().splitlines()
        tokens = split_punctuation(lines[0].split() if lines else [], set(words_of(example)))
        n = len(words_of(example))
        if not n / 2 - 1 <= len(tokens) <= 1.5 * n + 3:  # empty, cut off, or rambling on
            return None
        if not any(c.isalnum() for c in "".join(tokens)):  # punctuation only
            return None
        return tuple(tokens)

    def llm_max_tokens(self, example: Example) -> int:
        return 2 * len(words_of(example)) + 12

    def llm_output(self, ids: Any, example: Example) -> Any:
        from stepwise.tasks.edit.metrics import token_edits

        source = words_of(example)
        edits = [{"position": a, "source": " ".join(source[a:b]), "replacement": " ".join(r)}
                 for a, b, r in token_edits(source, list(ids))]
        return {"tokens": list(ids), "edits": [edits]}

    # --- output -------------------------------------------------------------------------------
    def to_labels(self, out: Any) -> str:
        return " ".join(out["tokens"])

    def ids_to_labels(self, ids: Any) -> str:
        return " ".join(ids)

    def prediction_ids(self, probs: Any) -> Any:
        return self.choose(probs)[0]

    def confidence(self, probs: np.ndarray) -> float:
        return self.choose(probs)[1]

    def empty_record(self, example: Example) -> dict[str, Any]:
        return {"source": example.text, "text": "", "edits": [], "note": "no text"}

    def prediction_record(self, example: Example, out: Any) -> dict[str, Any]:
        record: dict[str, Any] = {"source": " ".join(words_of(example)), "text": self.to_labels(out),
                                  "steps": len(out["edits"]), "edits": out["edits"]}
        if example.label:
            record["references"] = references(example.label)
        return record

    def prediction_tsv(self, example: Example, out: Any) -> str:
        return f"{' '.join(words_of(example))}\t{self.to_labels(out)}"

    def format_prediction(self, example: Example, probs: Any, fmt: str) -> str:
        if fmt == "text":
            self.check_output_format(fmt)
            return ("" if probs is None else self.to_labels(probs)) + "\n"
        return super().format_prediction(example, probs, fmt)

    # --- scoring ------------------------------------------------------------------------------
    def metrics(self, gold: list[Any], pred: list[str]) -> dict[str, Any]:
        from stepwise.tasks.edit.metrics import corpus_bleu, edit_scores, gleu

        sources = [s for s, _ in gold]
        refs = [r or [s] for s, r in gold]
        hyps = [p.split() for p in pred]
        edits = edit_scores(sources, hyps, refs)
        return {"gleu": gleu(sources, hyps, refs), "f0.5": edits["f0.5"], "precision": edits["precision"],
                "recall": edits["recall"], "bleu": corpus_bleu(hyps, refs),
                "changed": sum(h != s for h, s in zip(hyps, sources)) / max(len(hyps), 1),
                "edits": {k: edits[k] for k in ("tp", "fp", "fn")}, "n": len(gold)}

    def report_text(self, gold: list[Any], pred: list[str]) -> str:
        m = self.metrics(gold, pred)
        source = self.metrics(gold, [" ".join(s) for s, _ in gold])
        return (f"GLEU {100 * m['gleu']:.2f} (source copy {100 * source['gleu']:.2f}); "
                f"edits P {m['precision']:.4f} R {m['recall']:.4f} F0.5 {m['f0.5']:.4f} "
                f"(tp {m['edits']['tp']}, fp {m['edits']['fp']}, fn {m['edits']['fn']}); "
                f"BLEU {100 * m['bleu']:.2f}; sentences changed {100 * m['changed']:.1f}% of {m['n']}\n")
