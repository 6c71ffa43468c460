"""The retrieval task: a bi-encoder trained on (query, passage) pairs. Its own recipe trains it
(stepwise.tasks.retrieve.train); this class is what the shared loop and the task registry ask about."""

from __future__ import annotations

from typing import Any, Optional

from pydantic import Field

from stepwise.config import TaskOptions
from stepwise.tasks.retrieve.metrics import METRICS


class RetrieveOptions(TaskOptions):
    """A retriever's own training options (flags of `stepwise train`, keys of --config)."""

    pool: Optional[str] = Field(None, description="retrieve: the passages dev and test queries are ranked among "
                                "(JSONL id + passage/answer, TSV id<TAB>text, or one per line; default: every "
                                "distinct passage of the given splits)")
    hard_negatives: int = Field(0, ge=0, le=64, description="retrieve: mine this many near-miss passages per "
                                "training query with the starting model; each step adds one as a negative (0 = "
                                "in-batch negatives only)")
    retrieval_temperature: Optional[float] = Field(None, gt=0, le=1, description="retrieve: a fixed softmax "
                                                   "temperature (default: learned, starting at 0.05)")


class RetrieveTask:
    name = "retrieve"
    noun = "retriever"
    default_metric = "mrr@10"
    metric_names = METRICS
    #: `stepwise demo --app answer`
    demo = ("answer", "stepwise.tasks.retrieve.demo:run_answer_demo",
            "a small customer-service FAQ (retrieve, index, calibrate, answer)")
    summary = "rank passages for a query"
    #: its own verbs (add_parsers(sub, fmt) and HANDLERS), added to the command line
    cli = "stepwise.tasks.retrieve.cli"
    options_model = RetrieveOptions
    search_space: dict[str, Any] = {}

    @classmethod
    def claims_file(cls, path: str, input_format: str | None) -> bool:
        return False  # (query, passage) pairs look like a classifier's table: --task retrieve says so

    @classmethod
    def check_options(cls, config: Any, objective: str) -> None:
        """Nothing beyond the shared check (`stepwise.tasks.retrieve.train` refuses the loop's own options)."""
    recipe = "stepwise.tasks.retrieve.train:train_retriever"
    #: what to run instead of predict/evaluate (shown when a retriever run is given to them)
    verbs_hint = "use `stepwise index {run} --passages FILE --out INDEX`, then `stepwise answer INDEX`"
    default_steps = 1

    def __init__(self, labels: list[str] | None = None, **options: Any) -> None:
        self.labels = list(labels or [])
        self.options = options

    def units(self, features: list[dict[str, Any]]) -> int:
        """Throughput is counted in queries (each with its passage)."""
        return len(features)
