"""An exported model directory: self-contained, loadable without the run or torch.

    EXPORT/
      model.onnx       the task model (encoder + head + extra inputs), dynamic batch and sequence axes
      stepwise.json    the run's metadata + "export": format, opset, int8, parity numbers, source run
      tokenizer files  as saved by the tokenizer's save_pretrained
      README.md        how to load it, with and without stepwise
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stepwise.errors import StepwiseError
from stepwise.modeldir import META_FILE, read_meta

ONNX_FILE = "model.onnx"


def is_exported(path: str | Path) -> bool:
    p = Path(path)
    return (p / ONNX_FILE).is_file() and (p / META_FILE).is_file()


def load_exported(path: str | Path, *, threads: int | None = None, **overrides: Any) -> Any:
    """A Predictor on ONNX Runtime for an exported directory."""
    from transformers import AutoTokenizer

    from stepwise.backends.onnx import OnnxBackend
    from stepwise.modeldir import load_errors, quiet_transformers
    from stepwise.predictor import Predictor, predictor_options
    from stepwise.tasks import task_from_meta

    if not is_exported(path):
        raise StepwiseError("not an exported model directory (no model.onnx)", path=path,
                            fix="pass a directory written by `stepwise export`")
    meta = read_meta(path)
    fix = "the exported files are missing or damaged: export the run again"
    with quiet_transformers(), load_errors(path, "the exported model", fix):
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        backend = OnnxBackend(Path(path) / ONNX_FILE, threads)
    options = {**predictor_options(meta, overrides), "precision": "fp32"}  # ONNX Runtime computes in fp32
    return Predictor(None, tokenizer, task_from_meta(meta), backend=backend, **options)
