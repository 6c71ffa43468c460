"""Recipe: a trained run → a self-contained deployable directory, accepted only through the parity gate.

    check run, output path and the labeled parity data        nothing loaded yet
    → load the run (torch, fp32) → export into a temp dir beside --out
    → ONNX: score the parity data with torch and ONNX Runtime, gate, record the numbers
    → move the directory into place (atomic: a refused or interrupted export writes nothing)
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from stepwise.data.readers import read_examples
from stepwise.errors import StepwiseError
from stepwise.example import Example
from stepwise.modeldir import quiet_transformers
from stepwise.rundir import RunDir

EXPORT_README = """# {name}: stepwise ONNX export{int8}

`model.onnx` is the {task} model of `{run}` (encoder + head{extras}), dynamic batch and sequence axes,
opset {opset}; inputs {inputs} (int64, padded), output `logits`. `stepwise.json` holds the labels, the
run's options and the parity numbers measured at export time.

```bash
stepwise predict {path} --input texts.txt          # ONNX Runtime backend, chosen automatically
stepwise evaluate {path} --data test.tsv --json
```
```python
import stepwise
predictor = stepwise.load("{path}")                  # a Predictor on ONNX Runtime
print(predictor.predict(["some text"]))
```
"""


def export(run: str | Path, *, out: str | Path | None = None, int8: bool = False, opset: int = 18,
           fmt: str = "onnx", data: str | Path | None = None, threads: int | None = None) -> dict[str, Any]:
    """Export a run; returns the exported directory and, for ONNX, the parity report."""
    if fmt not in ("onnx", "hf"):
        raise StepwiseError(f"unknown export format {fmt!r}", fix="use --format onnx or hf")
    if fmt == "hf" and int8:
        raise StepwiseError("--int8 applies to ONNX exports", fix="drop --int8, or use --format onnx")
    if not 14 <= opset <= 21:
        raise StepwiseError(f"--opset {opset} is not supported", fix="use an opset from 14 to 21 (default 18)")
    run_dir = RunDir.open(run)
    target = Path(out) if out else run_dir.export_dir("hf" if fmt == "hf" else "onnx-int8" if int8 else "onnx")
    _check_target(target, run_dir)
    meta = run_dir.meta()
    if meta.get("kind") == "bi-encoder":  # a retriever: text → vector, gated on its dev ranking
        return _export_retriever(run_dir, target, int8=int8, opset=opset, fmt=fmt, data=data, threads=threads)
    examples = _parity_examples(run_dir, meta, data) if fmt == "onnx" else None

    from stepwise.model import replace_dir
    from stepwise.predictor import load

    reference = load(run_dir.path, precision="fp32")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        sample = _sample_batch(reference)
        if fmt == "hf":
            from stepwise.deploy.hf_export import export_hf

            report = export_hf(reference.model, reference.tokenizer, meta, run_dir.model_dir, tmp, target,
                               str(run_dir.path), sample)
        else:
            report = _export_onnx(reference, meta, examples, tmp, target, run_dir, int8, opset, threads, sample)
        replace_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"out": str(target), **report}


def _export_retriever(run_dir: RunDir, target: Path, *, int8: bool, opset: int, fmt: str, data: Any,
                      threads: int | None) -> dict[str, Any]:
    from stepwise.model import replace_dir
    from stepwise.tasks.retrieve.export import export_retriever

    if fmt != "onnx" or data is not None:
        raise StepwiseError("a retriever exports to ONNX, gated on its own dev pairs", path=run_dir.path,
                            fix="drop --format hf and --data")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        report = export_retriever(run_dir, tmp, int8=int8, opset=opset, threads=threads)
        replace_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"out": str(target), **report}


def _export_onnx(reference: Any, meta: dict, examples: list[Example], tmp: Path, target: Path, run_dir: RunDir,
                 int8: bool, opset: int, threads: int | None, sample: dict) -> dict[str, Any]:
    """fp32: export and gate. int8: quantize the fp32 graph with each setting, fastest first, keep the first
    that passes the gate; if none does, the last refusal is the error."""
    from stepwise.deploy.onnx_export import INT8_VARIANTS, export_onnx, quantize_int8
    from stepwise.deploy.parity import compare, gate
    from stepwise.layout import ONNX_FILE
    from stepwise.predictor import load

    model_file = tmp / ONNX_FILE
    fp32 = tmp / "model.fp32.onnx" if int8 else model_file
    info = export_onnx(reference.model, sample, fp32, opset=opset, int8=int8)
    with quiet_transformers():
        reference.tokenizer.save_pretrained(tmp)
    (tmp / "stepwise.json").write_text(json.dumps({**meta, "export": info}, indent=2))
    refusals: list[str] = []
    for variant in INT8_VARIANTS if int8 else (None,):
        if variant is not None:
            info = {**info, **quantize_int8(fp32, model_file, variant)}
        parity = compare(reference, load(tmp, backend="onnx", threads=threads), examples)
        try:
            gate(parity, int8, str(run_dir.path))
        except StepwiseError:
            refusals.append(f"{variant}: {parity['metric']} {parity['metric_onnx'] - parity['metric_torch']:+.4f}, "
                            f"agreement {parity['label_agreement']:.4f}")
            if variant is None or variant == INT8_VARIANTS[-1]:
                raise
            continue
        break
    if int8:
        fp32.unlink()
    info = {**info, "format": "onnx", "source": str(run_dir.path), "parity": parity,
            **({"int8_refused": refusals} if refusals else {})}
    (tmp / "stepwise.json").write_text(json.dumps({**meta, "export": info}, indent=2))
    extras = "".join(f" + {name}" for name in reference.model.extra_inputs)
    (tmp / "README.md").write_text(EXPORT_README.format(
        name=run_dir.path.name, int8=" (int8 weights)" if int8 else "", task=meta["task"], run=run_dir.path,
        extras=extras, opset=opset, inputs=", ".join(info["inputs"]), path=target))
    return info


def _check_target(target: Path, run_dir: RunDir) -> None:
    """--out may be new, empty or an earlier export (replaced); never a run, a model directory or inside one."""
    from stepwise.places import EXPORT, check_output, place_kind

    check_output(target, "--out", EXPORT, source=run_dir.path)
    if target.exists() and any(target.iterdir()) and place_kind(target) != EXPORT:
        raise StepwiseError("--out exists and is not an earlier export", path=target,
                            fix="choose a new or empty directory (an earlier export there is replaced)")


def _parity_examples(run_dir: RunDir, meta: dict, data: str | Path | None) -> list[Example]:
    """Labeled examples for the gate: --data, else the run's dev set."""
    from stepwise.recipes.evaluate import read_labeled
    from stepwise.tasks import task_from_meta

    task = task_from_meta(meta)
    if data is not None:
        return read_labeled(task, data)
    dev = run_dir.dev_data()
    if dev is None:
        raise StepwiseError("the run's dev data is gone (needed for the parity gate)", path=run_dir.path,
                            fix="pass --data with a labeled file for the gate")
    if dev == run_dir.split_file("dev"):
        examples = read_examples(dev, pair_column="text_pair" if meta.get("token_types") else None)
        task.check_labels(examples, str(dev))
        return examples
    from stepwise.config import build_config

    return read_labeled(task, dev, **build_config(run_dir.config(), source=str(run_dir.path)).read_options())


def _sample_batch(reference: Any) -> dict:
    """Two examples of different lengths: batch and sequence sizes above 1 stay symbolic in the export."""
    from stepwise.data.batching import pad
    from stepwise.refine.policy import first_step

    words = ["stepwise", "exports", "this", "model", "with", "dynamic", "axes"]
    texts: list[Any] = [words, words[:4]] if reference.task.read_format == "conll" else [" ".join(words), "a short one"]
    pair = "and a second text" if "token_type_ids" in reference.model.input_names else None
    features = reference.encode([Example(t, None, i + 1, pair) for i, t in enumerate(texts)])[:2]
    return pad(first_step(reference.task, features, reference.model.input_names), reference.tokenizer.pad_token_id)
