"""The refinement policy backed by a task model: the previous prediction enters as per-token ids."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from stepwise.backends import Backend
from stepwise.data.batching import pad
from stepwise.example import Example, Feature
from stepwise.infer import predict_features

if TYPE_CHECKING:
    import torch

    from stepwise.tasks.base import Task

PREV = "prev_ids"


def with_previous(task: Task, feature: Feature, ids: Any | None) -> Feature:
    """A copy of `feature` carrying the previous prediction (None: the learned 'no prediction yet')."""
    out = dict(feature)
    out[PREV] = [0] * len(feature["input_ids"]) if ids is None else task.prev_ids(feature, ids)
    return out


def first_step(task: Task, features: list[Feature], input_names: Any) -> list[Feature]:
    """The features a model with `input_names` reads at the first step: a refiner also gets 'no prediction yet'."""
    return [with_previous(task, f, None) for f in features] if PREV in input_names else features


class ModelPolicy:
    """Runs the model (through a backend) on the active examples' features, each with its previous prediction."""

    def __init__(self, backend: Backend, task: Task, examples: list[Example], features: list[Feature], *,
                 batch_size: int, pad_id: int) -> None:
        self.backend, self.task, self.examples, self.features = backend, task, examples, features
        self.options = {"batch_size": batch_size, "pad_id": pad_id}
        self.by_example: dict[int, list[int]] = {}
        for fi, feature in enumerate(features):
            self.by_example.setdefault(feature["_example"], []).append(fi)

    def act(self, indices: list[int], previous: list[Any | None]) -> tuple[list[Any], list[float], list[Any]]:
        feats = []
        for k, (i, prev) in enumerate(zip(indices, previous)):
            for fi in self.by_example.get(i, []):
                feature = self.features[fi]
                part = None if prev is None else self.task.slice_prediction(feature, prev)
                feats.append({**with_previous(self.task, feature, part), "_example": k})
        probs = predict_features(self.backend, self.task, feats, **self.options)
        merged = self.task.merge([self.examples[i] for i in indices], feats, probs)
        return ([self.task.prediction_ids(p) for p in merged], [self.task.confidence(p) for p in merged], merged)


class RefinerTraining:
    """Inputs for training step t on the model's own step t-1 predictions (made on the fly), corrupted.

    Half of the batches train the first step (no previous prediction); the other half see the current
    model's own first-step predictions with a share `noise` of positions replaced by a random label, so
    the model learns to keep what is right and fix what is wrong. Its own seeded generator (`rng`, saved
    in checkpoints) draws the coin flips and the corruption.
    """

    keeps_tokens = True  # its inputs keep the features' token ids (the loop's used embedding rows)

    def __init__(self, task: Task, noise: float, pad_id: int, precision: str, seed: int = 0) -> None:
        self.task, self.noise, self.pad_id, self.precision = task, noise, pad_id, precision
        self.rng = random.Random(seed)

    def inputs(self, model: torch.nn.Module, feats: list[Feature]) -> list[Feature]:
        import torch

        from stepwise.precision import autocast

        first = [with_previous(self.task, f, None) for f in feats]
        if self.rng.random() < 0.5:
            return first
        was_training = model.training
        model.eval()
        batch = pad(first, self.pad_id)
        with torch.no_grad(), autocast(self.precision):
            logits = model(**{k: torch.from_numpy(v) for k, v in batch.items()})
        probs = self.task.decode(logits.float().numpy(), batch)
        model.train(was_training)
        out = []
        for feature, p in zip(feats, probs):
            ids = self.task.prediction_ids(p)
            ids = self._corrupt(ids)
            out.append(with_previous(self.task, feature, ids))
        return out

    def _corrupt(self, ids: Any) -> Any:
        n_labels = len(self.task.labels)
        if getattr(ids, "ndim", 0) == 0:
            return self.rng.randrange(n_labels) if self.rng.random() < self.noise else int(ids)
        ids = ids.copy()
        for j in range(len(ids)):
            if self.rng.random() < self.noise:
                ids[j] = self.rng.randrange(n_labels)
        return ids
