"""The dev evaluation the training loop calls at each evaluation step, shared by every recipe that fits a model."""

from __future__ import annotations

from typing import Any

from stepwise.example import Example


class DevEvaluator:
    """Scores dev during training; for rl, adds the greedy prediction's mean reward as metric "reward"."""

    def __init__(self, predictor: Any, examples: list[Example], features: list, reward: Any) -> None:
        self.predictor, self.examples, self.features, self.reward = predictor, examples, features, reward

    def __call__(self) -> dict[str, Any]:
        score = self.predictor.score(self.examples, self.features)
        if self.reward is not None:
            gold = self.predictor.task.gold(self.examples)
            score["metrics"]["reward"] = sum(map(self.reward, score["pred"], gold)) / max(len(gold), 1)
        return score["metrics"]
