"""Document head: step 2 re-scores each word's tag from its step-1 probabilities and from the step-1
probabilities of the same word form elsewhere in its document.

Why a small head and not a second pass of the model (`--doc-context model`, stepwise.tasks.tag.document):
the second pass has to be trained on out-of-fold step-1 tags, so fold taggers take a quarter of the
training budget and the final model starts weaker than a single-step model given the whole budget. A head
over probabilities has a few hundred weights: it can be fitted on the dev split's step-1 probabilities
(out of sample for the model, as a real step 1 makes them) in seconds, so step 1 *is* the single-step
model and step 2 costs nothing at training time.

Per word, the features are (L = number of tags)

    log p, p                 the word's own step-1 probabilities
    mean q, max q            over the other occurrences of its word form (lower-cased, letters only)
                             in the same document: their latest probabilities (step 1 at step 2)
    log(1 + n), [n > 0]      how many other occurrences there are
    p of the previous word, p of the next word

and the head is a multinomial logistic regression (scikit-learn) whose C is chosen by cross-validation
over dev documents. Its weights live in the model's metadata (task option `doc_head`) and are applied with
numpy, so every backend (torch, ONNX Runtime) gets step 2.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from stepwise.example import Example, Feature
from stepwise.refine.policy import ModelPolicy
from stepwise.tasks.tag.document import keyed

if TYPE_CHECKING:
    from stepwise.backends import Backend
    from stepwise.tasks.base import Task

GRID = (0.003, 0.03, 0.3)  # C, the inverse L2 strength (features standardized), tried by cross-validation
FOLDS = 4  # at most; fewer when dev has fewer documents
MIN_DOCUMENTS = 2
_FLOOR = 1e-6


def width(n_labels: int) -> int:
    return 6 * n_labels + 2


def features(words: Sequence[list[str]], docs: Sequence[Any], own: Sequence[np.ndarray],
             latest: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """One row per word of every example (examples in order): see the module doc. `own[i]` is example i's
    (words, L) step-1 probabilities; `latest[i]` the probabilities its occurrences give as context (default:
    `own`)."""
    latest = own if latest is None else latest
    n_labels = own[0].shape[1] if len(own) else 0
    offsets = np.cumsum([0] + [len(p) for p in own])
    ctx_prob = np.concatenate(latest) if len(latest) else np.zeros((0, n_labels), np.float32)
    mean = np.zeros_like(ctx_prob)
    top = np.zeros_like(ctx_prob)
    count = np.zeros(len(ctx_prob), dtype=np.float32)
    groups: dict[tuple[Any, str], list[int]] = defaultdict(list)
    for i, (ws, doc) in enumerate(zip(words, docs)):
        if doc is None:
            continue
        for j, w in enumerate(ws):
            if keyed(w):
                groups[(doc, w.lower())].append(int(offsets[i]) + j)
    for rows in groups.values():
        if len(rows) < 2:
            continue
        idx = np.asarray(rows)
        block = ctx_prob[idx]
        mean[idx] = (block.sum(0) - block) / (len(idx) - 1)
        top[idx] = _max_of_others(block)
        count[idx] = len(idx) - 1
    pad = np.zeros((1, n_labels), np.float32)
    mine = np.concatenate([np.asarray(p, np.float32) for p in own]) if len(own) else pad[:0]
    # each example's previous- and next-word probabilities (zeros before its first and after its last word)
    around = np.concatenate([np.hstack([np.vstack([pad, p])[:-1], np.vstack([p, pad])[1:]]) for p in own]) \
        if len(own) else np.zeros((0, 2 * n_labels), np.float32)
    return np.hstack([np.log(mine + _FLOOR), mine, mean, top, np.log1p(count)[:, None], (count > 0)[:, None],
                      around]).astype(np.float32)


def _max_of_others(block: np.ndarray) -> np.ndarray:
    """Row r: the column-wise max over the block's other rows."""
    order = np.argsort(-block, axis=0)
    first, second = block[order[0], np.arange(block.shape[1])], block[order[1], np.arange(block.shape[1])]
    is_first = order[0][None, :] == np.arange(len(block))[:, None]
    return np.where(is_first, second, first)


@dataclass
class DocHead:
    """Weights (L, F) and bias (L) of the fitted head; `softmax(x @ weights.T + bias)` per word."""

    weights: np.ndarray
    bias: np.ndarray
    C: float

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        z = x @ self.weights.T + self.bias
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    def apply(self, words: Sequence[list[str]], docs: Sequence[Any], own: Sequence[np.ndarray],
              latest: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
        """Step-2 probabilities, one (words, L) array per example."""
        x = features(words, docs, own, latest)
        out = self.probabilities(x) if len(x) else np.zeros((0, self.weights.shape[0]), np.float32)
        return np.split(out, np.cumsum([len(p) for p in own])[:-1])

    def to_dict(self) -> dict[str, Any]:
        return {"weights": np.round(self.weights, 6).tolist(), "bias": np.round(self.bias, 6).tolist(), "C": self.C}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DocHead:
        return cls(np.asarray(data["weights"], dtype=np.float32), np.asarray(data["bias"], dtype=np.float32),
                   float(data["C"]))


def fit(x: np.ndarray, y: np.ndarray, groups: np.ndarray, n_labels: int, score: Callable[[np.ndarray], float],
        seed: int = 0) -> tuple[DocHead, np.ndarray, dict[float, float]]:
    """The head over rows `x` with gold tag ids `y`, C chosen by `score` (higher is better) of the
    cross-validated probabilities, folds by document (`groups`). Returns the head refitted on all rows,
    the cross-validated probabilities at the chosen C (an honest dev estimate) and every C's score."""
    from sklearn.model_selection import GroupKFold

    folds = list(GroupKFold(n_splits=min(FOLDS, len(set(groups.tolist())))).split(x, y, groups))
    scores, held = {}, {}
    for C in GRID:
        probs = np.zeros((len(y), n_labels), dtype=np.float32)
        for train, test in folds:
            probs[test] = _fit_one(x[train], y[train], n_labels, C, seed).probabilities(x[test])
        scores[C], held[C] = score(probs), probs
    best = max(GRID, key=lambda c: (scores[c], -c))  # a tie goes to the stronger regularization
    return _fit_one(x, y, n_labels, best, seed), held[best], scores


def _fit_one(x: np.ndarray, y: np.ndarray, n_labels: int, C: float, seed: int) -> DocHead:
    from sklearn.linear_model import LogisticRegression

    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale < 1e-6] = 1.0  # a constant column: left as it is
    model = LogisticRegression(C=C, max_iter=1000, random_state=seed).fit((x - mean) / scale, y)
    coef, intercept = model.coef_ / scale, model.intercept_ - (model.coef_ / scale) @ mean  # on unscaled rows
    weights = np.zeros((n_labels, x.shape[1]), dtype=np.float32)
    bias = np.full(n_labels, -30.0, dtype=np.float32)  # a tag never seen in the fitting data: never predicted
    if len(model.classes_) == 2:  # scikit-learn keeps one row for two classes: class 1 against class 0
        weights[model.classes_[1]], bias[model.classes_[1]] = coef[0], intercept[0]
        bias[model.classes_[0]] = 0.0
    else:
        weights[model.classes_] = coef
        bias[model.classes_] = intercept
    return DocHead(weights, bias, C)


class DocHeadPolicy(ModelPolicy):
    """Step 1: the model. Step t > 1: the head over each word's step-1 probabilities and its document's
    latest ones (examples that already stopped keep giving theirs)."""

    def __init__(self, backend: Backend, task: Task, examples: list[Example], features: list[Feature], *,
                 batch_size: int, pad_id: int, head: DocHead, words: Callable[[Example], list[str]]) -> None:
        super().__init__(backend, task, examples, features, batch_size=batch_size, pad_id=pad_id)
        self.head = head
        self.words = [words(ex) for ex in examples]
        self.docs = [ex.doc for ex in examples]
        self.step1: dict[int, np.ndarray] = {}
        self.latest: dict[int, np.ndarray] = {}

    def act(self, indices: list[int], previous: list[Any | None]) -> tuple[list[Any], list[float], list[Any]]:
        if all(p is None for p in previous):
            preds, scores, merged = super().act(indices, [None] * len(indices))
            self.step1.update(zip(indices, merged))
            self.latest.update(zip(indices, merged))
            return preds, scores, merged
        known = sorted(self.step1)
        probs = self.head.apply([self.words[i] for i in known], [self.docs[i] for i in known],
                                [self.step1[i] for i in known], [self.latest[i] for i in known])
        by_example = dict(zip(known, probs))
        merged = [by_example[i] for i in indices]
        self.latest.update(zip(indices, merged))
        return ([self.task.prediction_ids(p) for p in merged], [self.task.confidence(p) for p in merged], merged)


#: the exported Hugging Face directory's README says what the format leaves out of a run with a head
HF_EXPORT_NOTE = """
This is step 1 only. The run's step 2, a document head (`--doc-context head`) that re-scores each word
from the step-1 probabilities of the same word elsewhere in its document, is not a Hugging Face layer:
its weights are `task_options.doc_head` in `stepwise.json`. `stepwise export` (ONNX) keeps both steps,
and `stepwise.load` on the run applies them.
"""
