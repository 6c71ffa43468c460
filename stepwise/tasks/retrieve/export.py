"""`stepwise export` for a retriever: the bi-encoder as an ONNX graph (text → unit vector), fp32 or int8.

The gate compares the export with the run on the run's own dev queries and pool: fp32 must give the
same vectors (cosine ≥ 0.999 for every text); int8 may lose at most MAX_DROP of dev MRR@10, and the
int8 settings are tried fastest first, as for classifiers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from stepwise.errors import StepwiseError

MIN_COSINE = 0.999
MAX_DROP = 0.01  # MRR@10, absolute


def _parity_data(run_dir: Any) -> tuple[list[str], list[str], list[int]]:
    """The run's dev queries, its pool and each query's gold passage."""
    from stepwise.tasks.retrieve.data import pool_of, read_pairs, read_pool, resolve

    config = run_dir.config()
    dev_path = config.get("dev") or (run_dir.split_file("dev") if run_dir.split_file("dev").is_file() else None)
    if dev_path is None or not Path(dev_path).is_file():
        raise StepwiseError("the run's dev pairs are gone (needed for the parity gate)", path=run_dir.path,
                            fix="put the dev file back where the run read it")
    dev = read_pairs(dev_path)
    pool = read_pool(config["pool"]) if config.get("pool") else pool_of(
        [read_pairs(p) for p in (config.get("train"), dev_path, config.get("test")) if p and Path(p).is_file()])
    return [p.query for p in dev], [p.text for p in pool], resolve(dev, pool)


def export_retriever(run_dir: Any, tmp: Path, *, int8: bool, opset: int, threads: int | None) -> dict[str, Any]:
    from stepwise.backends.onnx import OnnxBackend
    from stepwise.backends.torch import TorchBackend
    from stepwise.data.batching import pad
    from stepwise.deploy.onnx_export import INT8_VARIANTS, export_onnx, quantize_int8
    from stepwise.layout import ONNX_FILE
    from stepwise.modeldir import quiet_transformers
    from stepwise.tasks.retrieve.embedder import Embedder
    from stepwise.tasks.retrieve.metrics import ranking_metrics, ranks
    from stepwise.tasks.retrieve.model import BiEncoder

    queries, pool, gold = _parity_data(run_dir)
    model, tokenizer, meta = BiEncoder.from_pretrained(run_dir.model_dir)
    ids = tokenizer(["stepwise exports this retriever with dynamic axes", "a short one"])["input_ids"]
    sample = pad([{"input_ids": x} for x in ids], tokenizer.pad_token_id)
    model_file = tmp / ONNX_FILE
    fp32 = tmp / "model.fp32.onnx" if int8 else model_file
    info = export_onnx(model, sample, fp32, opset=opset, int8=int8)
    with quiet_transformers():
        tokenizer.save_pretrained(tmp)
    length = meta.get("max_length", 256)
    reference = Embedder(TorchBackend(model, "fp32"), tokenizer, max_length=length)
    texts = queries + pool
    ref_vectors = reference.embed(texts)

    def mrr(vectors: np.ndarray) -> float:
        return ranking_metrics(ranks(vectors[:len(queries)] @ vectors[len(queries):].T, gold))["mrr@10"]

    ref_mrr = mrr(ref_vectors)
    refusals: list[str] = []
    for variant in INT8_VARIANTS if int8 else (None,):
        if variant is not None:
            info = {**info, **quantize_int8(fp32, model_file, variant)}
        vectors = Embedder(OnnxBackend(model_file, threads), tokenizer, max_length=length).embed(texts)
        cosine = float((vectors * ref_vectors).sum(axis=1).min())
        parity = {"texts": len(texts), "min_cosine": round(cosine, 6), "metric": "mrr@10",
                  "metric_torch": round(ref_mrr, 6), "metric_onnx": round(mrr(vectors), 6)}
        drop = parity["metric_torch"] - parity["metric_onnx"]
        if (int8 and drop <= MAX_DROP) or (not int8 and cosine >= MIN_COSINE):
            break
        refusals.append(f"{variant}: mrr@10 {-drop:+.4f}, min cosine {cosine:.4f}")
        if variant is None or variant == INT8_VARIANTS[-1]:
            what = f"loses {100 * drop:.2f} points of dev MRR@10" if int8 else f"gives other vectors (min cosine " \
                f"{cosine:.4f})"
            raise StepwiseError(f"the {'int8 ' if int8 else ''}export {what}; nothing written", path=run_dir.path,
                                fix="export without --int8" if int8 else "report this as a bug")
    if int8:
        fp32.unlink()
    info = {**info, "format": "onnx", "source": str(run_dir.path), "parity": parity,
            **({"int8_refused": refusals} if refusals else {})}
    (tmp / "stepwise.json").write_text(json.dumps({**meta, "export": info}, indent=2))
    (tmp / "README.md").write_text(f"# {run_dir.path.name}: retriever export{' (int8 weights)' if int8 else ''}\n\n"
                                   "`model.onnx` maps `input_ids`, `attention_mask` (int64, batch x sequence) to "
                                   "unit-length embeddings (output `logits`, batch x dim). Build an index with "
                                   "`stepwise index THIS_DIR --passages FILE --out INDEX`.\n")
    return info
