"""Completions from an OpenAI-compatible endpoint (`/v1/completions` or `/v1/chat/completions`), stdlib only.

Deterministic decoding (temperature 0, a fixed seed), a timeout per request, retries with exponential
backoff on timeouts, refused connections, 429/5xx answers and malformed JSON, and at most `concurrency`
requests in flight. A request that still fails is returned as a `Reply` with `error` set — never raised —
so the policy can fall back and count it.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from stepwise.errors import StepwiseError

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


@dataclass
class Reply:
    text: str | None  # None when the request failed
    tokens: int = 0  # completion tokens generated (the server's count)
    error: str | None = None  # what went wrong, for the report: "timeout", "http 503", "malformed json", ...
    attempts: int = 1


def endpoint_url(url: str) -> tuple[str, bool]:
    """The full URL to post to and whether it is a chat endpoint; a base URL (`http://host:port` or
    `.../v1`) means `/v1/completions`."""
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url, True
    if url.endswith("/completions"):
        return url, False
    if not url.startswith(("http://", "https://")):
        raise StepwiseError(f"--llm must be an http(s) URL, got {url!r}", fix="e.g. --llm http://127.0.0.1:8080")
    return (url + "/completions" if url.endswith("/v1") else url + "/v1/completions"), False


class CompletionClient:
    """`complete(prompts)` → one `Reply` per prompt, in order."""

    def __init__(self, url: str, *, model: str | None = None, key_env: str | None = None, timeout: float = 60.0,
                 retries: int = 2, backoff: float = 0.5, concurrency: int = 2, seed: int = 0) -> None:
        self.url, self.chat = endpoint_url(url)
        self.model, self.timeout, self.retries, self.backoff = model, timeout, retries, backoff
        self.concurrency, self.seed = max(1, concurrency), seed
        self.key = None
        if key_env:
            self.key = os.environ.get(key_env)
            if not self.key:
                raise StepwiseError(f"environment variable {key_env} is not set", fix=f"export {key_env}=... "
                                    "with the endpoint's API key, or drop --llm-key-env")

    def describe(self) -> str:
        return self.url

    def _payload(self, prompt: str, max_tokens: int, stop: list[str]) -> dict:
        body: dict = {"max_tokens": max_tokens, "temperature": 0.0, "top_p": 1.0, "seed": self.seed, "stop": stop}
        if self.model:
            body["model"] = self.model
        if self.chat:
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        return body

    def _parse(self, raw: bytes) -> tuple[str, int]:
        data = json.loads(raw)
        choice = data["choices"][0]
        text = choice["message"]["content"] if self.chat else choice["text"]
        if not isinstance(text, str):
            raise ValueError("no text in the reply")
        tokens = (data.get("usage") or {}).get("completion_tokens", 0)
        return text, int(tokens) if isinstance(tokens, (int, float)) else 0

    def _one(self, prompt: str, max_tokens: int, stop: list[str]) -> Reply:
        headers = {"Content-Type": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        body = json.dumps(self._payload(prompt, max_tokens, stop)).encode()
        error = "no attempt"
        for attempt in range(1, self.retries + 2):
            if attempt > 1:
                time.sleep(self.backoff * 2 ** (attempt - 2))
            retry = True
            try:
                request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
                text, tokens = self._parse(raw)
                return Reply(text, tokens, attempts=attempt)
            except urllib.error.HTTPError as err:
                error, retry = f"http {err.code}", err.code in RETRY_STATUS
            except TimeoutError:
                error = "timeout"
            except urllib.error.URLError as err:
                reason = err.reason
                error = "timeout" if isinstance(reason, TimeoutError) else f"connection: {reason}"
            except (ConnectionError, OSError) as err:  # reset or refused mid-read
                error = f"connection: {err}"
            except (ValueError, KeyError, IndexError, TypeError):  # JSONDecodeError is a ValueError
                error = "malformed json"
            if not retry:
                return Reply(None, error=error, attempts=attempt)
        return Reply(None, error=error, attempts=self.retries + 1)

    def complete(self, prompts: list[str], *, max_tokens: list[int], stop: list[str]) -> list[Reply]:
        if not prompts:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(prompts))) as pool:
            return list(pool.map(lambda pm: self._one(pm[0], pm[1], stop), zip(prompts, max_tokens)))
