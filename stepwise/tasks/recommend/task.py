"""The recommendation task: two towers trained on user histories and item texts. Its own recipe trains it
(stepwise.tasks.recommend.train); this class is what the shared loop and the task registry ask about."""

from __future__ import annotations

from typing import Any, Optional

from pydantic import Field

from stepwise.config import TaskOptions

#: the full-ranking metrics of stepwise.tasks.recommend.metrics at k = 10
METRICS = ("ndcg@10", "hr@10", "mrr", "coverage@10")


class RecommendOptions(TaskOptions):
    """A recommender's own training options (flags of `stepwise train`, keys of --config)."""

    items: Optional[str] = Field(None, description="recommend: the item texts (id column, then text fields: "
                                 "title, year, genres, description...)")
    min_rating: Optional[float] = Field(None, description="recommend: keep only interactions rated at least this "
                                        "(default: every row is an interaction)")
    history_items: int = Field(10, ge=1, le=200, description="recommend: the user tower reads this many most recent "
                               "items, newest first, cut at --max-length tokens")
    item_ids: bool = Field(False, description="recommend: hybrid item tower, a learned id vector added to the text "
                           "for items seen in training (cold items: text alone); off by default: on MovieLens dev "
                           "the two tied and text alone was far better on cold items (docs/results.md)")
    sampled_negatives: int = Field(64, ge=0, le=4096, description="recommend: items drawn uniformly per batch as "
                                   "extra negatives, beside the in-batch ones (both logQ-corrected)")
    examples_per_user: int = Field(1, ge=1, description="recommend: training examples per user, their most recent "
                                   "history prefixes (the CPU budget)")
    cold_items: float = Field(0.0, ge=0, lt=1, description="recommend: share of the catalogue (seeded) removed from "
                              "training, to measure cold-start items on the users whose test item is one of them")


class RecommendTask:
    name = "recommend"
    noun = "recommender"
    default_metric = "ndcg@10"
    metric_names = METRICS
    #: `stepwise demo --app recommend`
    demo = ("recommend", "stepwise.tasks.recommend.demo:run_recommend_demo",
            "a film club's viewings (two towers, a new film by its text)")
    summary = "rank items for a user"
    #: serves itself: POST /v1/recommend (stepwise serve RUN)
    server = "stepwise.tasks.recommend.serve:serve_run"
    #: its own verbs (add_parsers(sub, fmt) and HANDLERS), added to the command line
    cli = "stepwise.tasks.recommend.cli"
    options_model = RecommendOptions
    search_space: dict[str, Any] = {}

    @classmethod
    def claims_file(cls, path: str, input_format: str | None) -> bool:
        return False  # an interaction log looks like a table: --task recommend says so

    @classmethod
    def check_options(cls, config: Any, objective: str) -> None:
        """Nothing beyond the shared check (the recipe refuses the loop's own options)."""
    recipe = "stepwise.tasks.recommend.train:train_recommender"
    #: what to run instead of predict/evaluate (shown when a recommender run is given to them)
    verbs_hint = "use `stepwise recommend {run} --user U` (or --history ID,ID,...), or `stepwise serve {run}`"
    default_steps = 1

    def __init__(self, labels: list[str] | None = None, **options: Any) -> None:
        self.labels = list(labels or [])
        self.options = options

    def units(self, features: list[dict[str, Any]]) -> int:
        """Throughput is counted in training examples (a history and its next item)."""
        return len(features)
