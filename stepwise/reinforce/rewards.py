"""Reward plug-ins: score a prediction against the gold label(s). Higher is better.

A reward is `f(pred, gold) -> float` where pred/gold are a label (classification) or a list of tags
(tagging) or a corrected sentence (editing, whose gold is the source and its references). Built in:
accuracy, entity_f1, bleu, rouge_l, gleu, loglik (handled by the objective: the frozen
supervised model's mean log-probability of the sampled action). Anything else is `module:function`;
a user function may declare `reward_range = (low, high)`, which is then enforced.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from typing import Any

from stepwise.errors import StepwiseError

Reward = Callable[[Any, Any], float]


def accuracy(pred: Any, gold: Any) -> float:
    if isinstance(gold, list):
        return sum(p == g for p, g in zip(pred, gold)) / max(len(gold), 1)
    return float(pred == gold)


def entity_f1(pred: list[str], gold: list[str]) -> float:
    """Sentence-level entity F1 (seqeval spans); a sentence with no entities in either scores 1."""
    from seqeval.metrics.sequence_labeling import get_entities

    p, g = set(get_entities(list(pred))), set(get_entities(list(gold)))
    if not p and not g:
        return 1.0
    correct = len(p & g)
    return 2 * correct / (len(p) + len(g))


def _text(value: Any) -> str:
    return " ".join(value) if isinstance(value, list) else str(value)


def _edit_gold(gold: Any) -> bool:
    """An editor's gold is (source words, [reference words, ...])."""
    return isinstance(gold, tuple) and len(gold) == 2 and isinstance(gold[1], list)


def bleu(pred: Any, gold: Any) -> float:
    import sacrebleu

    if _edit_gold(gold):
        return sacrebleu.sentence_bleu(_text(pred), [_text(r) for r in gold[1]]).score / 100.0
    return sacrebleu.sentence_bleu(_text(pred), [_text(gold)]).score / 100.0


def gleu(pred: Any, gold: Any) -> float:
    """Sentence GLEU of an edited sentence against its references, given its source (editors only)."""
    from stepwise.tasks.edit.metrics import sentence_gleu

    if not _edit_gold(gold):
        raise StepwiseError("the gleu reward scores corrected sentences", fix="use it with editor runs")
    words = pred.split() if isinstance(pred, str) else list(pred)
    return sentence_gleu(gold[0], words, gold[1])


def rouge_l(pred: Any, gold: Any) -> float:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"]).score(_text(gold), _text(pred))["rougeL"].fmeasure


BUILT_IN: dict[str, Reward] = {"accuracy": accuracy, "entity_f1": entity_f1, "bleu": bleu, "rouge_l": rouge_l,
                               "gleu": gleu}
LOGLIK = "loglik"


def get_reward(spec: str) -> Reward | None:
    """The reward for a name or `module:function`; None means log-likelihood (computed by the objective)."""
    if spec == LOGLIK:
        return None
    if spec in BUILT_IN:
        return BUILT_IN[spec]
    if ":" not in spec:
        raise StepwiseError(f"unknown reward {spec!r}", fix=f"use one of {', '.join([*BUILT_IN, LOGLIK])} "
                            "or module:function")
    module_name, _, attr = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise StepwiseError(f"cannot load reward {spec!r} ({err})",
                            fix="check the module is importable (PYTHONPATH) and defines the function") from None
    if not callable(fn):
        raise StepwiseError(f"reward {spec!r} is not callable", fix="point at a function f(pred, gold) -> float")
    return checked(fn, spec)


def checked(fn: Callable[[Any, Any], Any], name: str) -> Reward:
    """Wrap a user reward so that a raise, a non-number or a value out of its declared range is a clear error."""
    bounds = getattr(fn, "reward_range", None)

    def reward(pred: Any, gold: Any) -> float:
        try:
            value = fn(pred, gold)
        except Exception as err:  # noqa: BLE001 — any failure in user code becomes one clear line
            raise StepwiseError(f"reward {name} raised {type(err).__name__}: {err}",
                                fix="fix the reward function") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise StepwiseError(f"reward {name} returned {value!r}, not a number",
                                fix="return an int or float") from None
        if bounds is not None and not bounds[0] <= value <= bounds[1]:
            raise StepwiseError(f"reward {name} returned {value}, outside its declared range {tuple(bounds)}",
                                fix="fix the function or its reward_range") from None
        return float(value)

    return reward
