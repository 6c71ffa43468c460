"""Document context: a second step that sees what the same word form was tagged elsewhere in its document.

One forward pass already sees the whole sentence, so re-reading its own tags adds little; what it cannot
see is the rest of the document: a name tagged PER in a clear context is PER in an ambiguous one too.
Step 1 runs with no context (`doc_ids` all 0); step 2 gives every word an id for how the *other*
occurrences of its word form (case-sensitive, same document, within the examples being predicted) were
tagged at step 1:

    0  none: padding, [CLS]/[SEP], or "no context yet" (step 1)
    1  the word form occurs nowhere else in the document (or the example has no document)
    2  elsewhere always O
    3+k  entity type k (the task's `entity_types` order): the majority type among the other occurrences
         tagged as an entity; a tie goes to the type that comes first

Training (`DocContextTraining`) mixes the two steps like `RefinerTraining`: half of the batches with no
context, half with the context computed from out-of-fold step-1 predictions (stepwise/tasks/tag/doc_context.py).
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any

from stepwise.example import Example, Feature
from stepwise.refine.policy import ModelPolicy

if TYPE_CHECKING:
    import torch

    from stepwise.backends import Backend
    from stepwise.tasks.base import Task

DOC = "doc_ids"  # the model input
TRAIN_KEY = "_doc_ids"  # a training feature's out-of-fold context (underscore keys never reach the model)
NONE, ALONE, ALWAYS_O = 0, 1, 2
FIRST_TYPE = 3


def vocabulary_size(n_types: int) -> int:
    return FIRST_TYPE + n_types


def keyed(word: str) -> bool:
    """Word forms that get a context: those with a letter (numbers and punctuation say nothing of names)."""
    return any(c.isalpha() for c in word)


def context_ids(words: list[list[str]], docs: list[int | None], classes: list[list[int] | None]) -> list[list[int]]:
    """Per example, per word: the context id (see the module doc) from the other occurrences of its form.

    `classes[i][j]` is word j of example i's predicted class: 0 for O, k + 1 for entity type k; None for
    an example with no prediction (it neither gives nor gets context). Examples with doc None are alone.
    """
    counts: dict[int, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for ws, doc, cs in zip(words, docs, classes):
        if doc is None or cs is None:
            continue
        for w, c in zip(ws, cs):
            if keyed(w):
                counts[doc][w][int(c)] += 1
    out = []
    for ws, doc, cs in zip(words, docs, classes):
        if doc is None or cs is None:
            out.append([ALONE] * len(ws))
            continue
        ids = []
        for w, c in zip(ws, cs):
            if not keyed(w):
                ids.append(ALONE)
                continue
            others = counts[doc][w].copy()
            others[int(c)] -= 1  # the word's own occurrence is not context
            ids.append(_vote(others))
        out.append(ids)
    return out


def _vote(others: Counter) -> int:
    entities = {c: n for c, n in others.items() if c > 0 and n > 0}
    if entities:
        best = max(entities.values())
        return FIRST_TYPE + min(c for c, n in entities.items() if n == best) - 1
    return ALWAYS_O if others.get(0, 0) > 0 else ALONE


def document_folds(examples: list[Example], k: int, seed: int) -> list[int]:
    """A fold per example, whole documents per fold (seeded, balanced by sentence count); an example with
    no document is a document of its own."""
    sizes: Counter = Counter(_unit(ex, i) for i, ex in enumerate(examples))
    units = sorted(sizes, key=str)
    random.Random(seed).shuffle(units)
    load, fold_of = [0] * k, {}
    for unit in units:
        fold = min(range(k), key=lambda f: (load[f], f))
        fold_of[unit] = fold
        load[fold] += sizes[unit]
    return [fold_of[_unit(ex, i)] for i, ex in enumerate(examples)]


def _unit(example: Example, index: int) -> tuple[str, int]:
    return ("doc", example.doc) if example.doc is not None else ("sentence", index)


class DocumentPolicy(ModelPolicy):
    """Step 1: the model with no context. Step t > 1: the context from every example's latest prediction
    (examples that already stopped keep giving theirs), so each word sees its document's step t-1 tags."""

    def __init__(self, backend: Backend, task: Task, examples: list[Example], features: list[Feature], *,
                 batch_size: int, pad_id: int) -> None:
        super().__init__(backend, task, examples, features, batch_size=batch_size, pad_id=pad_id)
        self.latest: dict[int, Any] = {}

    def act(self, indices: list[int], previous: list[Any | None]) -> tuple[list[Any], list[float], list[Any]]:
        from stepwise.infer import predict_features

        context = None
        if any(p is not None for p in previous):
            self.latest.update({i: p for i, p in zip(indices, previous) if p is not None})
            context = self.task.doc_context_ids(self.examples, [self.latest.get(i) for i in range(len(self.examples))])
        feats = []
        for k, i in enumerate(indices):
            for fi in self.by_example.get(i, []):
                feature = self.features[fi]
                ids = [NONE] * len(feature["input_ids"]) if context is None else self.task.doc_ids(feature, context[i])
                feats.append({**feature, DOC: ids, "_example": k})
        probs = predict_features(self.backend, self.task, feats, **self.options)
        merged = self.task.merge([self.examples[i] for i in indices], feats, probs)
        preds = [self.task.prediction_ids(p) for p in merged]
        self.latest.update(zip(indices, preds))
        return preds, [self.task.confidence(p) for p in merged], merged


class DocContextTraining:
    """Training inputs: half of the batches with no context (the model is also its own step 1), half with
    the out-of-fold context stored in each feature under TRAIN_KEY. Its seeded generator (`rng`) is saved
    in checkpoints."""

    keeps_tokens = True  # its inputs keep the features' token ids (the loop's used embedding rows)

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)

    def inputs(self, model: torch.nn.Module, feats: list[Feature]) -> list[Feature]:
        if self.rng.random() < 0.5:
            return [{**f, DOC: [NONE] * len(f["input_ids"])} for f in feats]
        return [{**f, DOC: f[TRAIN_KEY]} for f in feats]
