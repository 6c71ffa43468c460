"""Recipe: serve a run or an exported directory over HTTP (FastAPI on uvicorn) until SIGTERM.

One worker loads the model here, before the server binds, so a bad run fails with one line and
exit 2; several workers (`--workers N`) are separate processes that each load it (uvicorn's
supervisor), the torch threads split between them.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from stepwise.errors import StepwiseError
from stepwise.serve.settings import ServeSettings


def check_port(host: str, port: int) -> None:
    """Refuse a port that is taken before loading anything (uvicorn would only log and exit 1)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            raise StepwiseError(f"cannot listen on {host}:{port}: {err.strerror}",
                                fix="choose another --port, or stop what listens there") from None


@contextmanager
def drained_signals() -> Iterator[None]:
    """uvicorn drains on SIGTERM/SIGINT, then raises the signal again: make that second one a no-op (exit 0)."""
    previous = {sig: signal.signal(sig, lambda signum, frame: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(run: str | Path, settings: ServeSettings, *, log_level: str = "info", access_log: bool = True,
          answer: dict[str, Any] | None = None) -> None:
    """Serve a run or an export (POST /v1/predict), or an index (POST /v1/answer, with `answer`'s options)."""
    import uvicorn

    from stepwise.predictor import load_in_process
    from stepwise.serve.app import create_app, served_meta
    from stepwise.tasks.retrieve.index import is_index

    run = str(run)
    index = is_index(run)
    if answer and not index:
        raise StepwiseError(f"--{next(iter(answer)).replace('_', '-')} is for serving an index", path=run,
                            fix="drop it, or serve an index written by `stepwise index`")
    if index and settings.workers > 1:
        raise StepwiseError("an index is served by one worker (its batches use every free core)",
                            fix="drop --workers")
    own = None if index else _own_server(run)  # a task that serves itself (a recommender: POST /v1/recommend)
    if own and settings.workers > 1:
        raise StepwiseError(f"a {own.noun} is served by one worker (its batches use every free core)",
                            fix="drop --workers")
    if index:
        from stepwise.tasks.retrieve.serve import index_meta

        meta = index_meta(run)  # a bad path fails here, in one line
    elif own:
        meta = {"task": own.name, "name": Path(run).resolve().name}
    else:
        meta = served_meta(run)
    check_port(settings.host, settings.port)
    common: dict[str, Any] = {"host": settings.host, "port": settings.port, "log_level": log_level,
                              "access_log": access_log, "timeout_graceful_shutdown": settings.graceful_s,
                              "lifespan": "on"}
    if settings.workers > 1:
        from stepwise.threads import probe

        # counted once here: each worker would see its siblings as load and shrink
        threads = settings.threads or max(1, probe()[0] // settings.workers)
        spec = {"run": run, "settings": {**settings.to_dict(), "threads": threads}}
        os.environ["STEPWISE_SERVE"] = json.dumps(spec)  # the worker processes read it
        with drained_signals():
            uvicorn.run("stepwise.serve.app:app_from_environment", factory=True, workers=settings.workers, **common)
        return
    if index:  # the index, its encoder and the optional runs load before the server binds
        from stepwise.tasks.retrieve.answer import open_answerer
        from stepwise.tasks.retrieve.serve import create_answer_app

        answerer = open_answerer(run, threads=settings.threads, backend=settings.backend, **(answer or {}))
        app = create_answer_app(lambda: answerer, settings, meta)
    elif own:  # the task's own service loads what it needs before the server binds
        import importlib

        module, _, attr = own.server.partition(":")
        app = getattr(importlib.import_module(module), attr)(run, settings, meta)
    else:
        predictor = load_in_process(run, backend=settings.backend, threads=settings.threads)
        app = create_app(lambda: predictor, settings, meta)
    server = uvicorn.Server(uvicorn.Config(app, **common))
    with drained_signals():
        server.run()


def _own_server(run: str) -> Any:
    """The task class of a run whose task serves itself (its `server`, "module:function(run, settings, meta) ->
    app"), else None (the shared POST /v1/predict)."""
    from stepwise.modeldir import META_FILE
    from stepwise.tasks import task_class, task_names

    try:
        meta = json.loads((Path(run) / "model" / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # not a run, or a damaged one: the usual path says so in one line
    if not isinstance(meta, dict) or meta.get("task") not in task_names():
        return None
    cls = task_class(meta["task"])
    return cls if getattr(cls, "server", None) else None
