"""The query/passage encoder of a retriever run or of its ONNX export, behind one `Embedder`.

A run computes on torch (precision timed on the first batch, as every torch inference does); an
export (`stepwise export RUN [--int8]`) on ONNX Runtime. Both carry the run's weights fingerprint, so
an index built from the run can be queried from its export and vice versa: same model, same space.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stepwise.errors import StepwiseError
from stepwise.tasks.retrieve.embedder import Embedder


def load_encoder(path: str | Path, *, backend: str = "auto", threads: int | None = None,
                 batch_size: int = 64) -> tuple[Embedder, dict[str, Any]]:
    """(embedder, metadata with "fingerprint" and "max_length") for a retriever run or export."""
    from stepwise.layout import ONNX_FILE, is_exported
    from stepwise.modeldir import load_errors, quiet_transformers, read_meta
    from stepwise.tasks.retrieve.model import KIND
    from stepwise.threads import ThreadGovernor

    if backend not in ("auto", "torch", "onnx"):
        raise StepwiseError(f"unknown backend {backend!r}", fix="use auto, torch or onnx")
    governor = ThreadGovernor(forced=threads)
    governor.begin()
    if is_exported(path):
        meta = read_meta(path)
        if meta.get("kind") != KIND:
            raise StepwiseError(f"an export of a {meta.get('task')} run, not of a retriever", path=path,
                                fix="pass a retriever run (--task retrieve) or its export")
        if backend == "torch":
            raise StepwiseError("an exported directory runs on ONNX Runtime", path=path,
                                fix="pass the run directory for the torch backend, or drop --backend")
        from transformers import AutoTokenizer

        from stepwise.backends.onnx import OnnxBackend

        governor.start()
        with quiet_transformers(), load_errors(path, "the exported retriever", "export the run again"):
            tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            runner: Any = OnnxBackend(Path(path) / ONNX_FILE, governor.threads)
        source = f"{path} (ONNX{' int8' if meta.get('export', {}).get('int8') else ''})"
    else:
        from stepwise.backends.torch import TorchBackend
        from stepwise.rundir import RunDir
        from stepwise.tasks.retrieve.model import BiEncoder

        if backend == "onnx":
            raise StepwiseError("--backend onnx needs an exported directory", path=path,
                                fix=f"run `stepwise export {path}` first and pass its output")
        run = RunDir.open(path)
        meta = read_meta(run.model_dir)
        if meta.get("kind") != KIND:
            raise StepwiseError(f"a {meta.get('task')} run, not a retriever", path=path,
                                fix="train one with `stepwise train --task retrieve`")
        model, tokenizer, meta = BiEncoder.from_pretrained(run.model_dir)
        governor.start()
        runner = TorchBackend(model, meta.get("precision", "auto"))
        source = str(path)
    embedder = Embedder(runner, tokenizer, max_length=meta.get("max_length", 256), batch_size=batch_size)
    embedder.thread_governor = governor
    return embedder, {**meta, "source": source}
