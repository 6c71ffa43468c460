"""The server's settings: limits and switches, checked before anything starts."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from stepwise.errors import StepwiseError

#: the largest `steps` a client may ask a refiner for
MAX_STEPS = 20
#: the longest document name a client may give (taggers' `documents`)
MAX_DOCUMENT_NAME = 200


@dataclass(frozen=True)
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    api_key_env: str | None = None  # the NAME of an environment variable holding the key, never the key
    max_batch: int = 32  # items merged from concurrent requests
    sub_batch: int = 8  # a merged batch runs as length-sorted forward passes of this many (less padding)
    max_wait_ms: float = 5.0  # how long the first request of a batch waits for company
    max_text_chars: int = 4096
    max_items: int = 64  # items per request
    max_body_bytes: int = 1_000_000
    max_queue: int = 1024  # items waiting; beyond this a request is turned away with 503
    timeout_s: float = 30.0  # a request waiting longer gets 503 + Retry-After
    workers: int = 1
    threads: int | None = None
    backend: str = "auto"
    graceful_s: float = 30.0  # on SIGTERM, how long in-flight requests may take to finish

    def __post_init__(self) -> None:
        from stepwise.numbers import check_finite

        check_finite(asdict(self))
        positive = {"port": self.port, "max_batch": self.max_batch, "sub_batch": self.sub_batch,
                    "max_text_chars": self.max_text_chars,
                    "max_items": self.max_items, "max_body_bytes": self.max_body_bytes, "max_queue": self.max_queue,
                    "workers": self.workers, "timeout_s": self.timeout_s, "graceful_s": self.graceful_s}
        for name, value in positive.items():
            if value is None or value <= 0:
                raise StepwiseError(f"--{name.replace('_', '-')} must be greater than 0, got {value}",
                                    fix=f"pass a positive --{name.replace('_', '-')}")
        if not 0 < self.port < 65536:
            raise StepwiseError(f"--port must be in 1..65535, got {self.port}", fix="e.g. --port 8000")
        if self.max_wait_ms < 0:
            raise StepwiseError(f"--max-wait-ms must be 0 or more, got {self.max_wait_ms:g}",
                                fix="e.g. --max-wait-ms 5")
        if self.threads is not None and self.threads < 1:
            raise StepwiseError(f"--threads must be at least 1, got {self.threads}", fix="e.g. --threads 2")
        if self.api_key_env is not None and not os.environ.get(self.api_key_env):
            raise StepwiseError(f"--api-key-env {self.api_key_env}: that environment variable is not set or empty",
                                fix=f"export {self.api_key_env}=<a long random key>, or drop --api-key-env")

    @property
    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
