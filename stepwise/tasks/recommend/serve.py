"""`POST /v1/recommend`: a recommender run behind the same server (batching, limits, auth, health, metrics).

A request names a known user or gives a history of item ids; it gets what `stepwise recommend` prints.
Everything a client can get wrong is checked before the batcher (an unknown user or item is 404, a request
naming both or neither 422), so a request in a batch never fails the others.
"""

# No `from __future__ import annotations` here: FastAPI and pydantic read the annotations at runtime.

from collections.abc import Callable
from typing import Annotated, Any, Optional

from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model

import stepwise
from stepwise.errors import StepwiseError
from stepwise.serve.app import ERROR_RESPONSES, Guard, ServerState, _base_app, error, submit
from stepwise.serve.settings import ServeSettings

#: the longest history a request may give (the user tower reads the newest --history-items of it)
MAX_HISTORY = 10_000


class RecommendService:
    """The recommender with the surface the server drives: `predict_records`, `batch_size`, `backend`."""

    def __init__(self, recommender: Any) -> None:
        self.recommender = recommender

    @property
    def backend(self) -> Any:
        return self.recommender.embedder.backend

    @property
    def batch_size(self) -> int:
        return self.recommender.embedder.batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        self.recommender.embedder.batch_size = value

    def predict_records(self, items: list[Any], options: Any = None) -> list[Any]:
        from stepwise.predictor import recheck_threads

        if all(isinstance(item, str) for item in items):  # the server's warm-up: embed the texts, recommend nothing
            self.recommender.embedder.embed(items)
            return [[] for _ in items]
        records = self.recommender.recommend_many(items)
        recheck_threads(self.recommender.embedder)
        return records


class RecommendResponse(BaseModel):
    recommendations: list[dict[str, Any]] = Field(description="the k best items, best first: item id, text, score")


def recommend_request(settings: ServeSettings) -> type[BaseModel]:
    item_id = Annotated[str, StringConstraints(min_length=1, max_length=settings.max_text_chars)]
    return create_model(
        "RecommendRequest", __config__=ConfigDict(extra="forbid"),
        user=(Optional[item_id], Field(None, description="a user of the run's interaction log")),
        history=(Optional[list[item_id]], Field(None, min_length=1, max_length=MAX_HISTORY,
                                                description="item ids in time order, the newest last")),
        k=(int, Field(10, ge=1, le=1000, description="items to recommend")),
        exclude_seen=(bool, Field(False, description="never recommend an item of the history")))


def create_recommend_app(load_recommender: Callable[[], Any], settings: Optional[ServeSettings] = None,
                         meta: Optional[dict[str, Any]] = None) -> Guard:
    settings = settings or ServeSettings()
    meta = meta or {}
    state = ServerState(lambda: RecommendService(load_recommender()), settings, meta)
    Body = recommend_request(settings)
    app = _base_app(state, settings, "A stepwise recommender behind HTTP: `POST /v1/recommend`.")

    @app.post("/v1/recommend", response_model=RecommendResponse, responses=ERROR_RESPONSES)
    async def recommend(body: Body) -> Any:  # type: ignore[valid-type]
        """The next items for a user of the log, or for a history of item ids."""
        if (body.user is None) == (body.history is None):
            return error(422, "give a user or a history (item ids), not both and not neither", "user")
        for name, value in (("user", [body.user] if body.user is not None else []), ("history", body.history or [])):
            for i, text in enumerate(value):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    return error(422, f"{name}: not valid Unicode (a lone surrogate)", f"{name}[{i}]")
        if state.predictor is not None:  # checked here: a bad request must not fail the batch it would join
            try:
                state.predictor.recommender.history_of(body.user, body.history)
            except StepwiseError as err:
                return error(404 if "unknown" in err.problem else 422, err.problem,
                             "user" if body.user is not None else "history")
        request = {"user": body.user, "history": body.history, "k": body.k, "exclude_seen": body.exclude_seen}
        records = await submit(state, settings, [request], (None, None, "last"))
        return records if isinstance(records, Response) else {"recommendations": records[0]}

    @app.get("/v1/model", responses=ERROR_RESPONSES)
    async def model_info() -> Any:
        """What is being served: the run, its catalogue and users, the second step's weight."""
        recommender = state.predictor.recommender if state.predictor is not None else None
        return {"task": "recommend", "version": stepwise.__version__, "name": meta.get("name"),
                "items": len(recommender.items) if recommender else None,
                "users": len(recommender.users) if recommender else None,
                "fusion": recommender.settings["fusion"] if recommender else None,
                "backend": state.predictor.backend.name if state.predictor is not None else None}

    return Guard(app, settings, state.metrics)


def serve_run(run: str, settings: ServeSettings, meta: dict[str, Any]) -> Any:
    """The recommender's own service (RecommendTask.server): the item vectors, users and co-occurrence table
    load here, before the server binds."""
    from stepwise.tasks.recommend.recommender import Recommender

    loaded = Recommender.open(run, backend=settings.backend, threads=settings.threads)
    return create_recommend_app(lambda: loaded, settings, meta)
