"""`POST /v1/answer`: the answer pipeline (retrieve → rerank → answer or abstain) behind the same server.

Same batching, limits, auth, health and metrics as `/v1/predict` (serve/app.py); each query gets the
record `stepwise answer` prints for it.
"""

# No `from __future__ import annotations` here: FastAPI and pydantic read the annotations at runtime.

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model

import stepwise
from stepwise.serve.app import ERROR_RESPONSES, Guard, ServerState, _base_app, error, submit
from stepwise.serve.settings import ServeSettings


class AnswerService:
    """The answerer with the surface the server drives: `predict_records`, `batch_size`, `backend`."""

    def __init__(self, answerer: Any) -> None:
        self.answerer = answerer

    @property
    def backend(self) -> Any:
        return self.answerer.embedder.backend

    @property
    def batch_size(self) -> int:
        return self.answerer.embedder.batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        self.answerer.embedder.batch_size = value

    def predict_records(self, items: list[Any], options: Any = None) -> list[dict[str, Any]]:
        from stepwise.predictor import recheck_threads

        records = self.answerer.answer([str(item) for item in items])
        recheck_threads(self.answerer.embedder)
        return records


class AnswerResponse(BaseModel):
    answers: list[dict[str, Any]] = Field(description="one record per query, in order: what `stepwise answer` "
                                                      "prints (answers with ids and scores, abstain, reason, intent)")


def answer_request(settings: ServeSettings) -> type[BaseModel]:
    text = Annotated[str, StringConstraints(max_length=settings.max_text_chars)]
    return create_model("AnswerRequest", __config__=ConfigDict(extra="forbid"), queries=(list[text], Field(
        min_length=1, max_length=settings.max_items, description=f"at most {settings.max_items} queries")))


def create_answer_app(load_answerer: Callable[[], Any], settings: Optional[ServeSettings] = None,
                      meta: Optional[dict[str, Any]] = None) -> Guard:
    settings = settings or ServeSettings()
    meta = meta or {}
    state = ServerState(lambda: AnswerService(load_answerer()), settings, meta)
    Body = answer_request(settings)
    app = _base_app(state, settings, "A stepwise answer index behind HTTP: `POST /v1/answer`.")

    @app.post("/v1/answer", response_model=AnswerResponse, responses=ERROR_RESPONSES)
    async def answer(body: Body) -> Any:  # type: ignore[valid-type]
        """The top answers per query, and whether to abstain (out of scope)."""
        for i, query in enumerate(body.queries):
            try:
                query.encode("utf-8")
            except UnicodeEncodeError:
                return error(422, f"queries[{i}]: not valid Unicode (a lone surrogate)", f"queries[{i}]")
        records = await submit(state, settings, list(body.queries), (None, None, "last"))
        return records if isinstance(records, Response) else {"answers": records}

    @app.get("/v1/model", responses=ERROR_RESPONSES)
    async def model_info() -> Any:
        """What is being served: the index, its model, the reranker and intent runs, the calibration."""
        answerer = state.predictor.answerer if state.predictor is not None else None
        return {"task": "answer", "version": stepwise.__version__, "index": meta.get("id"),
                "passages": meta.get("size"), "model": meta.get("model", {}).get("source"),
                "backend": state.predictor.backend.name if state.predictor is not None else None,
                "rerank": answerer.reranker.source if answerer and answerer.reranker else None,
                "intent": answerer.intent.source if answerer and answerer.intent else None,
                "calibrated": bool(answerer and answerer.calibration)}

    return Guard(app, settings, state.metrics)


def index_meta(path: str | Path) -> dict[str, Any]:
    from stepwise.tasks.retrieve.index import Index

    return Index.load(path).meta
