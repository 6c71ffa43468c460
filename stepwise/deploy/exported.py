"""An exported model directory: self-contained, loadable without the run or torch.

    EXPORT/
      model.onnx       the task model (encoder + head + extra inputs), dynamic batch and sequence axes
      stepwise.json    the run's metadata + "export": format, opset, int8, parity numbers, source run
      tokenizer files  as saved by the tokenizer's save_pretrained
      README.md        how to load it, with and without stepwise
"""

from __future__ import annotations

from pathlib import Path

from stepwise.backends import Opened
from stepwise.errors import StepwiseError
from stepwise.layout import ONNX_FILE, is_exported
from stepwise.modeldir import read_meta


class ExportOpener:
    """Opens an exported directory on ONNX Runtime (no torch): `stepwise.load`'s "onnx" backend."""

    def claims(self, path: str | Path) -> bool:
        return is_exported(path)

    def open(self, path: str | Path, *, threads: int | None = None) -> Opened:
        from transformers import AutoTokenizer

        from stepwise.backends.onnx import OnnxBackend
        from stepwise.modeldir import load_errors, quiet_transformers

        if not is_exported(path):
            raise StepwiseError("--backend onnx needs an exported directory", path=path,
                                fix=f"run `stepwise export {path}` first and pass its output (default {path}/onnx)")
        meta = read_meta(path)
        fix = "the exported files are missing or damaged: export the run again"
        with quiet_transformers(), load_errors(path, "the exported model", fix):
            tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            backend = OnnxBackend(Path(path) / ONNX_FILE, threads)
        return Opened(None, tokenizer, meta, backend, fixed={"precision": "fp32"})  # ONNX Runtime computes in fp32


OPENER = ExportOpener()
