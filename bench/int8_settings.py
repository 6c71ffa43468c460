"""Both int8 settings `stepwise export --int8` can choose, on the SST-2 run: test accuracy and batch-32 speed.

Run: cd bench && ../.venv/bin/python int8_settings.py   (after `make bench-infer`, whose fp32 export it quantizes)
Each setting quantizes bench/out/infer_sst2_onnx's fp32 graph into a scratch copy under bench/out/, then scores
the SST-2 test set through stepwise's ONNX Runtime backend (the batch-32 pass timed 3 times, median kept);
torch fp32 of the same run is the reference.
"""

from __future__ import annotations

import shutil
import time

import numpy as np
from common import OUT, SHARED, emit, need

import stepwise
from stepwise.data.readers import read_examples
from stepwise.deploy.onnx_export import INT8_VARIANTS, quantize_int8


def accuracy(predictor, test) -> float:
    probs = predictor.probabilities(test)
    return float(np.mean([predictor.task.to_labels(p) == ex.label for p, ex in zip(probs, test)]))


def main() -> None:
    test = read_examples(need(SHARED / "sst2" / "test.tsv"))
    fp32 = need(OUT / "infer_sst2_onnx")
    reference = accuracy(stepwise.load(need(OUT / "classify_recommended_defaults"), batch_size=32,
                                          precision="fp32"), test)
    rows = []
    for k, setting in enumerate(INT8_VARIANTS):
        scratch = OUT / f"int8_setting_{k}"
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.copytree(fp32, scratch)
        quantize_int8(fp32 / "model.onnx", scratch / "model.onnx", setting)
        predictor = stepwise.load(scratch, batch_size=32)
        predictor.probabilities(test[:64])  # warm-up
        times = []
        for _ in range(3):
            tick = time.perf_counter()
            acc = accuracy(predictor, test)
            times.append(time.perf_counter() - tick)
        rows.append({"int8 setting": setting, "test_accuracy": round(acc, 4),
                     "vs_torch_fp32_points": round(100 * (acc - reference), 2),
                     "examples_per_s": round(len(test) / float(np.median(times)), 1)})
        print(rows[-1], flush=True)
    emit("int8_settings", rows, ["int8 setting", "test_accuracy", "vs_torch_fp32_points", "examples_per_s"],
         {"torch_fp32_test_accuracy": round(reference, 4)})


if __name__ == "__main__":
    main()
