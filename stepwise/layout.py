"""File names of the directories stepwise writes (a run, an export), and telling an export from a run.

Only names and path tests live here, so that the run directory (stepwise.rundir), the output-path rules
(stepwise.places), the exported model's loader and the Predictor can all use them without importing
each other.

    RUN/
      config.yaml      resolved training options        labels.json   the label set
      splits/          the 7:2:1 split, when made        metrics.jsonl one line per log step / evaluation
      checkpoint.pt    resumable state (after training: state only, no weights)
      model/           best weights + tokenizer + stepwise.json (task, labels, options)
      folds/           --doc-context: the step-1 fold models and their out-of-fold predictions, while training
      report.txt  report.json  curves.png  results.json (written last: the run is finished)

    EXPORT/
      model.onnx       the task model; stepwise.json (the run's metadata + "export"); tokenizer files
"""

from __future__ import annotations

from pathlib import Path

from stepwise.modeldir import META_FILE

CONFIG = "config.yaml"
LABELS = "labels.json"
SPLITS = "splits"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
MODEL = "model"
REPORT_TXT = "report.txt"
REPORT_JSON = "report.json"
CURVES = "curves.png"
RESULTS = "results.json"
LOG = "train.log"
FOLDS = "folds"
EXPORTS = {"onnx": "onnx", "onnx-int8": "onnx-int8", "hf": "hf"}  # default `stepwise export` outputs
ENTRIES = (CONFIG, LABELS, SPLITS, METRICS, CHECKPOINT, MODEL, REPORT_TXT, REPORT_JSON, CURVES, RESULTS, LOG, FOLDS,
           *EXPORTS.values())

ONNX_FILE = "model.onnx"


def is_exported(path: str | Path) -> bool:
    """An exported directory (ONNX): its model and its stepwise.json side by side."""
    p = Path(path)
    return (p / ONNX_FILE).is_file() and (p / META_FILE).is_file()
