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


def serve(run: str | Path, settings: ServeSettings, *, log_level: str = "info", access_log: bool = True) -> None:
    import uvicorn

    from stepwise.predictor import load_in_process
    from stepwise.serve.app import create_app, served_meta

    run = str(run)
    meta = served_meta(run)  # a bad path fails here, in one line
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
    predictor = load_in_process(run, backend=settings.backend, threads=settings.threads)
    server = uvicorn.Server(uvicorn.Config(create_app(lambda: predictor, settings, meta), **common))
    with drained_signals():
        server.run()
