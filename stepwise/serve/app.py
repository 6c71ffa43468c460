"""The HTTP app: a thin adapter from JSON requests to `Predictor.predict_records`, on FastAPI.

Everything a client can send gets a 2xx or a 4xx with one JSON line `{"error": ..., "field": ...}`;
size limits answer 413, malformed requests 422, missing or wrong keys 401, and a server that is
loading, overloaded or too slow answers 503 with Retry-After. The app owns its metrics registry,
batcher and thread: two apps in one process do not share state.
"""

# No `from __future__ import annotations` here: FastAPI and pydantic read the annotations at runtime.

import asyncio
import hmac
import itertools
import json
import logging
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model
from starlette.exceptions import HTTPException as StarletteHTTPException

import stepwise
from stepwise.example import Example
from stepwise.serve.batcher import MicroBatcher, Overloaded
from stepwise.serve.metrics import ServeMetrics
from stepwise.serve.settings import MAX_DOCUMENT_NAME, MAX_STEPS, ServeSettings
from stepwise.tasks import task_class, task_names

log = logging.getLogger("stepwise.serve")

#: endpoints with their own metrics label; anything else (a fuzzer's random paths) counts as "other"
ENDPOINTS = ("/v1/predict", "/v1/answer", "/v1/model", "/healthz", "/readyz", "/metrics", "/docs", "/openapi.json")
OPEN_PATHS = ("/healthz",)  # reachable without the API key when one is configured
RETRY_AFTER_S = 1


class ErrorBody(BaseModel):
    error: str = Field(description="what is wrong, in one line")
    field: Optional[str] = Field(None, description="the request field at fault, e.g. texts[3]")


class PredictResponse(BaseModel):
    predictions: list[dict[str, Any]] = Field(
        description="one record per input, in input order: what `stepwise predict --format jsonl` prints")


class ModelInfo(BaseModel):
    task: str
    labels: list[str]
    backend: str
    version: str = Field(description="the stepwise version serving")
    multi_step: bool = Field(description="whether `steps`, `confidence` and `keep` change anything")
    default_steps: int
    model: dict[str, Any] = Field(description="the run's model name, run id and export details, where known")


ERROR_RESPONSES: dict[Union[int, str], dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "missing or wrong API key"},
    413: {"model": ErrorBody, "description": "body, item count or text length over the server's limits"},
    422: {"model": ErrorBody, "description": "a malformed request; `field` names the problem"},
    503: {"model": ErrorBody, "description": "loading, overloaded or timed out; retry after Retry-After seconds"},
}


def error(status: int, message: str, field: Optional[str] = None, headers: Optional[dict[str, str]] = None
          ) -> JSONResponse:
    return JSONResponse({"error": message, "field": field}, status_code=status, headers=headers)


def unavailable(message: str) -> JSONResponse:
    return error(503, message, headers={"Retry-After": str(RETRY_AFTER_S)})


def request_model(task: Any, settings: ServeSettings, pairs: bool = False) -> type[BaseModel]:
    """The request body for a task class, with the server's limits in the schema (clients and fuzzers see them).

    `pairs`: the model was trained on text pairs, so a request may give each text its second half.
    """
    text = Annotated[str, StringConstraints(max_length=settings.max_text_chars)]
    item: Any = Union[text, list[text]] if task.takes_token_lists else text
    item_help = "texts (split on whitespace) or token lists" if task.takes_token_lists else "texts"
    fields: dict[str, Any] = {
        "texts": (list[item], Field(min_length=1, max_length=settings.max_items,
                                    description=f"{item_help}, at most {settings.max_items} per request")),
        "steps": (Optional[int], Field(None, ge=1, le=MAX_STEPS, description="refiners: prediction steps")),
        "confidence": (Optional[float], Field(None, gt=0, le=1,
                                              description="refiners: stop an item at this confidence")),
        "keep": (Literal["last", "best"], Field("last", description="refiners: the last step or the best scored")),
    }
    if pairs:
        fields["pairs"] = (Optional[list[text]], Field(None, description="text-pair classifiers: the second text "
                                                                          "of each pair, as many as texts"))
    if task.takes_documents:
        document = Annotated[str, StringConstraints(max_length=MAX_DOCUMENT_NAME)]
        fields["documents"] = (Optional[list[Optional[Union[int, document]]]], Field(
            None, description="taggers with document context: each text's document, as many as texts (texts with "
            "the same value in this request are one document; null: none)"))
    return create_model("PredictRequest", __config__=ConfigDict(extra="forbid"), **fields)


def field_name(loc: tuple[Any, ...]) -> str:
    """('body', 'texts', 3) -> 'texts[3]'."""
    name = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        if isinstance(part, int):
            name += f"[{part}]"
        elif part in ("str", "list[str]", "list[constrained-str]", "constrained-str") or "function" in str(part):
            continue  # which branch of a union pydantic tried: not a field
        else:
            name += f".{part}" if name else str(part)
    return name or "body"


SIZE_ERRORS = ("too_long", "string_too_long")


def validation_response(err: RequestValidationError) -> JSONResponse:
    errors = err.errors()
    sized = [e for e in errors if e.get("type") in SIZE_ERRORS]
    first = sized[0] if sized else errors[0]
    field = field_name(tuple(first.get("loc", ())))
    kind = first.get("type")
    if kind == "json_invalid":
        return error(422, f"body: not valid JSON ({first.get('ctx', {}).get('error', 'parse error')})", "body")
    message = first.get("msg", "invalid")
    if kind == "missing":
        message = "required"
    elif kind == "extra_forbidden":
        message = "unknown field"
    return error(413 if sized else 422, f"{field}: {message}", field)


def check_texts(body: BaseModel, settings: ServeSettings) -> Optional[JSONResponse]:
    """What the schema cannot say: token lists' total length, text that is not valid Unicode, pair counts."""
    from stepwise.data.text import strip_invisible

    for i, item in enumerate(body.texts):
        text = item if isinstance(item, str) else " ".join(item)
        blank = next((j for j, token in enumerate(item) if not strip_invisible(token)), None) \
            if not isinstance(item, str) else None
        if blank is not None:  # a token of nothing a reader sees: it would get a tag of its own
            return error(422, f"texts[{i}][{blank}]: a blank or invisible token; every token needs a visible "
                         "character (or send the text as one string)", f"texts[{i}][{blank}]")
        if len(text) > settings.max_text_chars:
            return error(413, f"texts[{i}]: {len(text)} characters; the limit is {settings.max_text_chars}",
                         f"texts[{i}]")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return error(422, f"texts[{i}]: not valid Unicode (a lone surrogate)", f"texts[{i}]")
    documents = getattr(body, "documents", None)
    if documents is not None and len(documents) != len(body.texts):
        return error(422, f"documents: {len(documents)} documents for {len(body.texts)} texts; give one per text "
                     "(null for none)", "documents")
    pairs = getattr(body, "pairs", None)
    if pairs is not None:
        if len(pairs) != len(body.texts):
            return error(422, f"pairs: {len(pairs)} pairs for {len(body.texts)} texts; give one per text", "pairs")
        for i, pair in enumerate(pairs):
            try:
                pair.encode("utf-8")
            except UnicodeEncodeError:
                return error(422, f"pairs[{i}]: not valid Unicode (a lone surrogate)", f"pairs[{i}]")
    return None


class ServerState:
    """The model and its batcher; `ready` once loaded and warmed, `draining` once shutdown began."""

    def __init__(self, load_predictor: Callable[[], Any], settings: ServeSettings, meta: dict[str, Any]) -> None:
        from stepwise.predictor import PredictOptions

        self.load_predictor = load_predictor
        self.settings = settings
        self.meta = meta
        self.metrics = ServeMetrics()
        self.predictor: Any = None
        self.ready = False
        self.draining = False
        self.failed: Optional[str] = None
        self.requests = itertools.count()

        def predict(items: list[Any], key: Any) -> list[Any]:
            from stepwise.predictor import recheck_threads

            steps, confidence, keep = key
            records = self.predictor.predict_records(items, PredictOptions(steps, confidence, None, keep))
            recheck_threads(self.predictor)  # a free re-count (at most once a second): follow the host's load
            return records

        self.batcher = MicroBatcher(predict, max_batch=settings.max_batch, max_wait_ms=settings.max_wait_ms,
                                    max_queue=settings.max_queue, metrics=self.metrics)

    def load(self) -> None:
        """Load the model and run one small batch, so the first client does not pay for warm-up."""
        try:
            predictor = self.load_predictor()
            predictor.batch_size = self.settings.sub_batch
            predictor.predict_records(["stepwise warm-up request", "ok"])
        except Exception as err:  # noqa: BLE001 — the server stays up to say why it is not ready
            self.failed = f"{type(err).__name__}: {err}"
            log.exception("stepwise serve: the model failed to load")
            return
        self.predictor = predictor
        self.ready = True
        log.info("stepwise serve: model loaded and warmed (%s backend)", predictor.backend.name)


def _base_app(state: "ServerState", settings: ServeSettings, description: str) -> FastAPI:
    """What every service has: the lifespan (load, then drain), one-line errors, health, readiness, metrics."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202 — FastAPI's protocol
        state.batcher.start()
        loading = asyncio.get_running_loop().run_in_executor(None, state.load)
        yield
        state.draining = True
        await loading
        await state.batcher.stop(settings.graceful_s)

    app = FastAPI(title="stepwise", version=stepwise.__version__, lifespan=lifespan, description=description)
    app.state.stepwise = state

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        return validation_response(err)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        return error(err.status_code, str(err.detail), headers=getattr(err, "headers", None))

    @app.exception_handler(Exception)
    async def on_bug(request: Request, err: Exception) -> JSONResponse:
        log.exception("stepwise serve: internal error on %s", request.url.path)
        return error(500, f"internal error ({type(err).__name__}); the server log has the traceback")

    @app.get("/healthz", responses=ERROR_RESPONSES)
    async def healthz() -> dict[str, str]:
        """Alive: the process answers (the model may still be loading)."""
        return {"status": "alive"}

    @app.get("/readyz", responses=ERROR_RESPONSES)
    async def readyz() -> Any:
        """Ready: the model is loaded and warmed, and the server is not shutting down."""
        if state.draining:
            return unavailable("shutting down")
        if not state.ready:
            return unavailable(f"the model failed to load: {state.failed}" if state.failed else "the model is loading")
        return {"status": "ready"}

    @app.get("/metrics", response_class=Response, responses=ERROR_RESPONSES)
    async def metrics() -> Response:
        """Prometheus text format."""
        return Response(state.metrics.text(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return app


async def submit(state: "ServerState", settings: ServeSettings, items: list[Any], key: Any) -> Any:
    """Items through the batcher: their records, or the 503 that says why not (loading, overloaded, slow)."""
    if not state.ready:
        return unavailable(state.failed and f"the model failed to load: {state.failed}" or "the model is loading")
    try:
        return await asyncio.wait_for(state.batcher.submit(items, key), settings.timeout_s)
    except Overloaded as err:
        return unavailable(f"overloaded: {err}")
    except asyncio.TimeoutError:
        return unavailable(f"timed out after {settings.timeout_s:g} s in the queue and model")


def create_app(load_predictor: Callable[[], Any], settings: Optional[ServeSettings] = None,
               meta: Optional[dict[str, Any]] = None) -> "Guard":
    """The service for one model. `load_predictor` runs in a thread at startup (a loaded Predictor: `lambda: p`)."""
    settings = settings or ServeSettings()
    meta = meta or {}
    task_name = meta.get("task") or task_names()[0]  # without metadata: the first registered task
    task = task_class(task_name)
    state = ServerState(load_predictor, settings, meta)
    Body = request_model(task, settings, pairs=task.takes_text_pairs and bool(meta.get("token_types")))
    app = _base_app(state, settings, f"A stepwise {task_name} model behind HTTP: `POST /v1/predict`.")

    @app.post("/v1/predict", response_model=PredictResponse, responses=ERROR_RESPONSES)
    async def predict(body: Body) -> Any:  # type: ignore[valid-type]
        """Labels and probabilities (classifier), tags and entity spans (tagger), edited text (editor)."""
        problem = check_texts(body, settings)
        if problem is not None:
            return problem
        pairs = getattr(body, "pairs", None) or [None] * len(body.texts)
        request = next(state.requests)  # documents are this request's: batches merge several requests
        named = getattr(body, "documents", None) or [None] * len(body.texts)
        documents = [None if d is None else (request, d) for d in named]
        items = [Example(text, None, i + 1, pair, doc)
                 for i, (text, pair, doc) in enumerate(zip(body.texts, pairs, documents))]
        records = await submit(state, settings, items, (body.steps, body.confidence, body.keep))
        return records if isinstance(records, Response) else {"predictions": records}

    @app.get("/v1/model", response_model=ModelInfo, responses=ERROR_RESPONSES)
    async def model_info() -> Any:
        """What is being served."""
        backend = state.predictor.backend.name if state.predictor is not None else (
            "onnx" if meta.get("export") else "torch")
        steps = meta.get("refine_steps") or task.default_steps
        model = {"name": meta.get("name"), "pooling": meta.get("pooling"), "max_length": meta.get("max_length"),
                 "text_pairs": bool(meta.get("token_types")), "export": meta.get("export")}
        return {"task": task_name, "labels": list(meta.get("labels", [])), "backend": backend,
                "version": stepwise.__version__, "multi_step": bool(task.iterative or steps > 1),
                "default_steps": steps, "model": {k: v for k, v in model.items() if v is not None}}

    return Guard(app, settings, state.metrics)


class Guard:
    """ASGI middleware in front of the app: API key, body size, and per-request metrics.

    It reads the body itself (up to the limit) so an oversize body is refused before parsing, whether
    or not the client sent Content-Length.
    """

    def __init__(self, app: FastAPI, settings: ServeSettings, metrics: ServeMetrics) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self.key = settings.api_key.encode() if settings.api_key else None
        self.state = app.state  # tests and the recipe reach the app's state through the guard too

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path = scope.get("path", "")
        endpoint = path if path in ENDPOINTS else "other"
        status_seen = {"status": 500}

        async def send_counted(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status_seen["status"] = message["status"]
            await send(message)

        try:
            refusal = self._refuse(scope)
            if refusal is None:
                body, refusal = await self._read_body(scope, receive)
            if refusal is not None:
                await refusal(scope, receive, send_counted)
                return
            await self.app(as_json(scope), replay(body, receive), send_counted)
        finally:
            self.metrics.observe(endpoint, status_seen["status"], time.perf_counter() - started)

    def _refuse(self, scope: dict[str, Any]) -> Optional[JSONResponse]:
        if self.key is None or scope.get("path") in OPEN_PATHS:
            return None
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-api-key")
        auth = headers.get(b"authorization", b"")
        if given is None and auth[:7].lower() == b"bearer ":
            given = auth[7:].strip()
        if given is None:
            return error(401, "API key required: send `Authorization: Bearer KEY` or `X-API-Key: KEY`", "api_key",
                         headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(given, self.key):
            return error(401, "wrong API key", "api_key", headers={"WWW-Authenticate": "Bearer"})
        return None

    async def _read_body(self, scope: dict[str, Any], receive: Callable) -> tuple[bytes, Optional[JSONResponse]]:
        limit = self.settings.max_body_bytes
        too_big = error(413, f"body: larger than {limit} bytes (the server's --max-body-bytes)", "body")
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return b"", too_big
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"", error(400, "the client went away", "body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return b"", too_big
            chunks.append(chunk)
            if not message.get("more_body", False):
                body = b"".join(chunks)
                try:
                    body.decode("utf-8")
                except UnicodeDecodeError as err:
                    return b"", error(422, f"body: not UTF-8 (byte {err.start}); send JSON in UTF-8", "body")
                return body, None


def as_json(scope: dict[str, Any]) -> dict[str, Any]:
    """Read a POST body as JSON whatever Content-Type says (`curl -d` sends form-urlencoded)."""
    if scope.get("method") != "POST":
        return scope
    headers = [(k, v) for k, v in scope.get("headers") or [] if k != b"content-type"]
    return {**scope, "headers": [*headers, (b"content-type", b"application/json")]}


def replay(body: bytes, receive: Callable) -> Callable:
    """A `receive` that hands the app the body already read, then waits on the real one (for disconnects)."""
    sent = False

    async def receive_again() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return receive_again


def app_from_environment() -> Any:
    """The app for `uvicorn --factory` in each of several worker processes (settings come by environment)."""
    import os

    from stepwise.predictor import load_in_process

    spec = json.loads(os.environ["STEPWISE_SERVE"])
    settings = ServeSettings(**spec["settings"])
    run = spec["run"]
    return create_app(lambda: load_in_process(run, backend=settings.backend, threads=settings.threads), settings,
                      served_meta(run))


def served_meta(run: str | Path) -> dict[str, Any]:
    """The metadata of what is served (a run or an exported directory), with its directory's name."""
    from stepwise.rundir import model_meta

    return {**model_meta(run), "name": Path(run).resolve().name}
