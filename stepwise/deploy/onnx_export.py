"""The task model as one ONNX file, with the well-kept tools only.

torch.onnx (dynamo) exports the model with dynamic batch and sequence axes → onnxscript's ORT fusion
rewriter turns the BERT blocks into ORT's fused Attention / Gelu, and LayerNormalization (the
TorchScript-era `onnxruntime.transformers` optimizer does not match transformers 5's SDPA attention;
for int8, attention stops at MultiHeadAttention so its projections can be quantized; no BiasGelu and
no SkipLayerNormalization, which are slower there: `_fuse_for_ort`)
→ the onnx checker validates the graph → optionally `onnxruntime.quantization.quantize_dynamic`
stores int8 weights (activations quantized on the fly).

int8 settings, measured on dev sets (stepwise tagger on CoNLL-2003, F1 0.8418 in fp32; classifier on
SST-2, accuracy 0.8658; measured with the fused Attention op, which the quantizer left in fp32): ORT's
defaults −0.94 pt F1; per-channel weights −0.49 F1; per-channel with only MatMuls quantized (embedding
tables stay fp32: 67 MB instead of 31 MB) −0.34 F1 and −0.69 accuracy; the same with `reduce_range`
(7-bit weights, which avoid int16 saturation in u8×s8 kernels) −0.27 F1 and −0.11 accuracy. That is the
first setting `export` tries; the parity gate allows −0.5 pt, and when it refuses, the second keeps the
FFN output projections in fp32 (see `quantize_int8`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter prints progress and the quantizer logs advice on the root logger: keep stdout/stderr ours."""
    loggers = [logging.getLogger(), logging.getLogger("torch.onnx"), logging.getLogger("torch.onnx._internal")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


class _Positional(torch.nn.Module):
    """The model with positional inputs in `input_names` order: what the exporter traces."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.names = tuple(model.input_names)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, inputs)))


def _fuse_for_ort(model: Any, int8: bool) -> tuple[Any, dict[str, int]]:
    """onnxscript's ORT fusions, less those that cost time on ONNX Runtime's CPU provider.

    - SkipLayerNormalization, never: ORT's CPU kernel for it is slower than the residual Add and the
      LayerNormalization it replaces (+23% examples/s for SST-2 int8, +8% fp32, with ORT's own fusion of it
      turned off in the session too: `backends/onnx.py`).
    - BiasGelu, never: left as Add + Gelu, ORT's own optimizer moves the bias into the MatMul before it
      (`MatMulIntegerToFloat` / `DynamicQuantizeMatMul` take a bias) and runs Gelu alone: +3.9% examples/s
      for SST-2 int8, +0.8% fp32 (bench/NOTES.md).
    - For int8, attention stops at MultiHeadAttention: ORT's fused Attention op takes the Q/K/V projection
      inside it, and `quantize_dynamic` leaves an Attention node with `qkv_hidden_sizes` (what the fusion
      writes) in fp32, so the projections stay MatMuls, which it quantizes: +32% examples/s on SST-2,
      where the fp32 graph is 2% faster fused.

    onnxscript has no switch for one fusion; its own steps are skipped, and `patch.object` fails loudly if
    a new onnxscript (pinned in pyproject) renames them.
    """
    from contextlib import ExitStack
    from unittest import mock

    from onnxscript.rewriter import ort_fusions
    from onnxscript.rewriter.ort_fusions import _core

    skipped = ["fuse_skip_layer_normalization", "fuse_bias_gelu"] + (["fuse_attention"] if int8 else [])
    with ExitStack() as stack:
        for step in skipped:
            stack.enter_context(mock.patch.object(_core, step, lambda model, debug=False: 0))
        return ort_fusions.optimize_for_ort(model)


def export_onnx(model: torch.nn.Module, sample: dict[str, np.ndarray], path: str | Path, *,
                opset: int = 18, int8: bool = False) -> dict[str, Any]:
    """Write the fp32 graph to `path`; `sample` is a padded batch of at least two rows (size-1 dims would be
    specialised). `int8=True` for a graph that will be quantized (fused for it: `_fuse_for_ort`). Returns the
    opset, the fusion counts, the input names and the file size."""
    import onnx
    import onnxscript

    names = tuple(model.input_names)
    wrapper = _Positional(model.eval())
    args = tuple(torch.from_numpy(np.ascontiguousarray(sample[name])) for name in names)
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    with _quiet(), torch.no_grad():
        program = torch.onnx.export(wrapper, args, input_names=list(names), output_names=["logits"],
                                    dynamic_shapes=(tuple({0: batch, 1: sequence} for _ in names),),
                                    dynamo=True, opset_version=opset, verbose=False)
        fused_model, fusions = _fuse_for_ort(program.model, int8)
    proto = onnxscript.ir.serde.serialize_model(fused_model)
    onnx.checker.check_model(proto)
    path = Path(path)
    onnx.save(proto, str(path))
    return {"opset": opset, "int8": False, "fusions": {k: v for k, v in fusions.items() if v},
            "inputs": list(names), "bytes": path.stat().st_size}


# int8 settings, fastest first; `export` keeps the first that passes the parity gate.
INT8_VARIANTS = ("per-channel, 7-bit weights", "per-channel, FFN output layers in fp32")


def quantize_int8(source: str | Path, path: str | Path, variant: str) -> dict[str, Any]:
    """Dynamic int8 weights for the MatMuls of `source` (fp32) into `path`.

    The second variant keeps each layer's FFN output projection (the MatMul fed by GELU, whose inputs have
    the widest range) in fp32: on SST-2 dev it cut the int8 loss of a 3-layer distilled student from −0.80
    to −0.46 points at ~16% lower throughput.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    options: dict[str, Any] = {"per_channel": True, "op_types_to_quantize": ["MatMul"],
                               # a fused graph needs the default tensor type for shape inference (ORT's docs)
                               "extra_options": {"DefaultTensorType": onnx.TensorProto.FLOAT}}
    if variant == INT8_VARIANTS[0]:
        options["reduce_range"] = True
    elif variant == INT8_VARIANTS[1]:
        graph = onnx.load(str(source), load_external_data=False).graph
        producer = {out: node.op_type for node in graph.node for out in node.output}
        options["nodes_to_exclude"] = [node.name for node in graph.node if node.op_type == "MatMul"
                                       and producer.get(node.input[0]) in ("BiasGelu", "Gelu", "FastGelu")]
    else:
        raise ValueError(f"unknown int8 variant {variant!r}")
    with _quiet():
        quantize_dynamic(str(source), str(path), weight_type=QuantType.QInt8, **options)
    return {"int8": True, "int8_variant": variant, "bytes": Path(path).stat().st_size}
