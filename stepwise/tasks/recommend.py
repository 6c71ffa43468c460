"""The recommendation task: two towers trained on user histories and item texts. Its own recipe trains it
(stepwise.recipes.recommend); this class is what the shared loop and the task registry ask about."""

from __future__ import annotations

from typing import Any

#: the full-ranking metrics of stepwise.recommend.metrics at k = 10
METRICS = ("ndcg@10", "hr@10", "mrr", "coverage@10")


class RecommendTask:
    name = "recommend"
    noun = "recommender"
    default_metric = "ndcg@10"
    metric_names = METRICS
    config_fields = ("items", "min_rating", "history_items", "item_ids", "sampled_negatives", "examples_per_user",
                     "cold_items")
    recipe = "stepwise.recipes.recommend:train_recommender"
    #: what to run instead of predict/evaluate (shown when a recommender run is given to them)
    verbs_hint = "use `stepwise recommend {run} --user U` (or --history ID,ID,...), or `stepwise serve {run}`"
    default_steps = 1

    def __init__(self, labels: list[str] | None = None, **options: Any) -> None:
        self.labels = list(labels or [])
        self.options = options

    def units(self, features: list[dict[str, Any]]) -> int:
        """Throughput is counted in training examples (a history and its next item)."""
        return len(features)
