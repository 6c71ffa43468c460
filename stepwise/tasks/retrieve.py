"""The retrieval task: a bi-encoder trained on (query, passage) pairs. Its own recipe trains it
(stepwise.recipes.retrieve); this class is what the shared loop and the task registry ask about."""

from __future__ import annotations

from typing import Any

from stepwise.retrieval.metrics import METRICS


class RetrieveTask:
    name = "retrieve"
    noun = "retriever"
    default_metric = "mrr@10"
    metric_names = METRICS
    config_fields = ("pool", "hard_negatives", "retrieval_temperature")
    recipe = "stepwise.recipes.retrieve:train_retriever"
    #: what to run instead of predict/evaluate (shown when a retriever run is given to them)
    verbs_hint = "use `stepwise index {run} --passages FILE --out INDEX`, then `stepwise answer INDEX`"
    default_steps = 1

    def __init__(self, labels: list[str] | None = None, **options: Any) -> None:
        self.labels = list(labels or [])
        self.options = options

    def units(self, features: list[dict[str, Any]]) -> int:
        """Throughput is counted in queries (each with its passage)."""
        return len(features)
