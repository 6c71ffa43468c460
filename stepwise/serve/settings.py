"""The server's settings: limits and switches, checked before anything starts.

One declaration for both doors: `stepwise serve`'s flags are generated from this model, and a Python caller
(`create_app(..., ServeSettings(max_batch=16))`) is validated by it in the same words.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, Optional

from pydantic import ConfigDict, Field, field_validator, model_validator

from stepwise.backends import backend_names
from stepwise.errors import StepwiseError
from stepwise.options import Options

#: the largest `steps` a client may ask a refiner for
MAX_STEPS = 20
#: the longest document name a client may give (taggers' `documents`)
MAX_DOCUMENT_NAME = 200

BACKEND_HELP = "auto: ONNX Runtime for an exported directory, torch for a run"


class ServeSettings(Options):
    """How `stepwise serve` (and `create_app`) run: the address, the limits, the batching and the backend."""

    model_config = ConfigDict(**Options.model_config, frozen=True)  # a running server's settings do not change
    fix: ClassVar[str] = "see `stepwise serve --help`"

    host: str = Field("127.0.0.1", description="interface to bind (loopback unless you say otherwise)")
    port: int = Field(8000, ge=1, le=65535)
    api_key_env: Optional[str] = Field(None, json_schema_extra={"metavar": "VAR"},
                                       description="require the key held in this environment variable")
    max_batch: int = Field(32, gt=0, description="most items merged from concurrent requests")
    sub_batch: int = Field(8, gt=0, description="a merged batch runs as length-sorted forward passes of this many "
                           "items (less padding)")
    max_wait_ms: float = Field(5.0, ge=0, description="how long a batch waits to fill")
    max_text_chars: int = Field(4096, gt=0, description="longest text accepted")
    max_items: int = Field(64, gt=0, description="most texts in one request")
    max_body_bytes: int = Field(1_000_000, gt=0, description="largest request body")
    max_queue: int = Field(1024, gt=0, description="items waiting before requests get 503")
    timeout_s: float = Field(30.0, gt=0, description="a request waiting longer gets 503")
    workers: int = Field(1, gt=0, description="server processes, each with its own model")
    threads: Optional[int] = Field(None, ge=1, description="inference threads per worker (default: free cores / "
                                   "workers)")
    backend: str = Field("auto", json_schema_extra={"choices": backend_names}, description=BACKEND_HELP)
    graceful_s: float = Field(30.0, gt=0, json_schema_extra={"flag": False},
                              description="on SIGTERM, how long in-flight requests may take to finish")

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if value not in backend_names():
            raise StepwiseError(f"unknown backend {value!r}", fix=f"use one of {', '.join(backend_names())}")
        return value

    @model_validator(mode="after")
    def _key_is_set(self) -> ServeSettings:
        if self.api_key_env is not None and not os.environ.get(self.api_key_env):
            raise StepwiseError(f"--api-key-env {self.api_key_env}: that environment variable is not set or empty",
                                fix=f"export {self.api_key_env}=<a long random key>, or drop --api-key-env")
        return self

    @property
    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()
