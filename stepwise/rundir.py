"""The run directory: the one place that knows its layout and whether a run there can start or resume.

The file names of the layout are in stepwise.layout (shared with the output-path rules and the loaders).

A run is decided by its checkpoint, not by its config: a directory without a checkpoint holds nothing
that can be lost, so a plain rerun (or `--resume`) starts it over; one with a checkpoint continues with
`--resume`; `--overwrite` clears it. Temp files of an interrupted atomic write are removed on start.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stepwise.errors import StepwiseError
from stepwise.layout import CHECKPOINT, CONFIG, ENTRIES, EXPORTS, FOLDS, LABELS, MODEL, RESULTS, SPLITS, is_exported

EMPTY, UNSTARTED, RESUMABLE, FINISHED = "empty", "unstarted", "resumable", "finished"
DAMAGED = "damaged"
DAMAGED_FIX = "restore the run directory from a copy, or retrain it with --overwrite"


class RunDir:
    """Paths inside one run directory, its status, and the rules for starting, resuming and opening it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __str__(self) -> str:
        return str(self.path)

    @property
    def model_dir(self) -> Path:
        return self.path / MODEL

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    def split_file(self, split: str) -> Path:
        return self.path / SPLITS / f"{split}.jsonl"

    def fold_dir(self, fold: int) -> Path:
        """--doc-context: where the step-1 model of one fold trains (removed once the run is finished)."""
        return self.path / FOLDS / f"fold{fold}"

    def export_dir(self, kind: str) -> Path:
        """Where `stepwise export` writes by default: inside the run, removed with it by --overwrite."""
        return self.path / EXPORTS[kind]

    def dev_data(self) -> Path | None:
        """The run's dev examples: the split it made, or the --dev file it was trained with (if still there)."""
        if self.split_file("dev").is_file():
            return self.split_file("dev")
        dev = self.config().get("dev")
        return Path(dev) if dev and Path(dev).is_file() else None

    # --- status ---------------------------------------------------------------------------------------
    def status(self) -> str:
        """empty (nothing of ours), unstarted (no checkpoint yet), resumable, or finished."""
        if (self.path / RESULTS).is_file() and self.model_dir.is_dir():
            return FINISHED
        if self.checkpoint.is_file() or any((self.path / FOLDS).glob(f"*/{CHECKPOINT}")):
            return RESUMABLE
        if self.path.is_dir() and any((self.path / name).exists() for name in ENTRIES):
            return UNSTARTED
        return EMPTY

    def check_writable(self, source: str | Path | None = None) -> None:
        """An --out that cannot become a directory, or would land in another run or an export (or be `source`,
        the run it starts from), is reported before any work starts."""
        from stepwise.files import nearest_existing

        parent = nearest_existing(self.path)
        if not parent.is_dir():
            where = "is" if parent == self.path else f"is under {parent}, which is"
            raise StepwiseError(f"the run directory {where} a file, not a directory", path=self.path,
                                fix="choose another --out")
        if not os.access(parent, os.W_OK):
            raise StepwiseError("cannot write here (permission denied)", path=parent, fix="choose another --out")
        from stepwise.places import RUN, check_output

        check_output(self.path, "--out", RUN, source=source)

    def begin(self, *, resume: bool, overwrite: bool) -> bool:
        """Prepare the directory for `train`; True when training continues from the checkpoint."""
        self.check_writable()
        status = self.status()
        if overwrite and status != EMPTY:
            self.clear()
            status = EMPTY
        if status == FINISHED and not resume:
            raise StepwiseError("the run directory already holds a finished run", path=self.path,
                                fix="choose another --out, or pass --overwrite to replace it")
        if status == RESUMABLE and not resume:
            raise StepwiseError("the run directory holds an interrupted run", path=self.path,
                                fix="pass --resume to continue it, or --overwrite to start over")
        if status == UNSTARTED:
            self.clear()  # stopped before its first checkpoint: nothing to keep, start over
        self.path.mkdir(parents=True, exist_ok=True)
        self.clean_temp()
        return status in (RESUMABLE, FINISHED)

    def clear(self) -> None:
        """Remove what stepwise wrote here (and only that), so a new run starts clean."""
        self.clean_temp()
        for name in ENTRIES:
            target = self.path / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()

    def clean_temp(self) -> None:
        """Leftovers of an interrupted atomic write: `.NAME.*` temp files and directories.

        A model save interrupted between its two renames leaves only `.model.old`; it is moved back.
        """
        if not self.path.is_dir():
            return
        old_model = self.path / f".{MODEL}.old"
        if old_model.is_dir() and not self.model_dir.exists():
            os.replace(old_model, self.model_dir)
        for entry in self.path.iterdir():
            if entry.name.startswith(".") and any(entry.name.startswith(f".{name}.") for name in ENTRIES):
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()

    # --- opening a run for evaluate / predict / rl / export / serve -----------------------------------
    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """A directory holding a trained model: a run directory, or its model/ directory itself."""
        p = Path(path)
        if not p.exists():
            raise StepwiseError("run directory not found", path=path,
                                fix="pass the --out directory of `stepwise train`")
        if not p.is_dir():
            raise StepwiseError("not a run directory (it is a file)", path=path,
                                fix="pass the --out directory of `stepwise train`")
        from stepwise.modeldir import META_FILE

        if is_exported(p):
            raise StepwiseError("this is an exported model (ONNX), not a run directory", path=path,
                                fix="pass the run it was exported from (training and export start from runs)")
        if (p / META_FILE).is_file() and p.name == MODEL:
            return cls(p.parent)
        if not (p / MODEL / META_FILE).is_file():
            status = cls(p).status()
            hint = ("the run has not saved a model yet: finish it with `stepwise train ... --resume`"
                    if status in (UNSTARTED, RESUMABLE) else "pass the --out directory of `stepwise train`")
            raise StepwiseError("not a trained stepwise run (no model/stepwise.json)", path=path, fix=hint)
        return cls(p)

    def meta(self) -> dict[str, Any]:
        from stepwise.modeldir import read_meta

        return read_meta(self.model_dir)

    def results(self) -> dict[str, Any] | None:
        """results.json (None while the run is not finished); damaged or foreign: one StepwiseError."""
        from stepwise.modeldir import read_json

        path = self.path / RESULTS
        if not path.exists():
            return None
        return read_json(path, "run's results file", DAMAGED_FIX, required={"task": str})

    def labels(self) -> list[str] | None:
        from stepwise.modeldir import read_json

        path = self.path / LABELS
        return read_json(path, "run's label file", DAMAGED_FIX, kind=list) if path.exists() else None

    def config(self) -> dict[str, Any]:
        from stepwise.config import load_yaml

        return load_yaml(self.path / CONFIG) if (self.path / CONFIG).is_file() else {}


@dataclass
class Run:
    """A finished run directory and its headline results (the `--json` object)."""

    path: Path
    results: dict[str, Any]

    def load(self, **overrides: Any) -> Any:
        from stepwise.predictor import load

        return load(self.path, **overrides)

    @classmethod
    def from_dir(cls, path: str | Path) -> Run:
        """A run written earlier, from its directory's results.json."""
        results = RunDir(path).results()
        if results is None:
            raise StepwiseError("the run has no results.json (not finished)", path=path,
                                fix="finish it with `stepwise train ... --resume`")
        return cls(Path(path), results)


def model_meta(path: str | Path) -> dict[str, Any]:
    """The metadata of a run or an exported directory, without loading a model (a task without labels to
    predict, such as a retriever, is refused)."""
    from stepwise.modeldir import read_meta
    from stepwise.tasks import check_predicts

    meta = read_meta(path) if is_exported(path) else RunDir.open(path).meta()
    check_predicts(meta, path)
    return meta


def _headline(task: str) -> str | None:
    """The task's headline metric (its default), or None for an unknown task name."""
    from stepwise.tasks import task_class, task_names

    return task_class(task).default_metric if task in task_names() else None


def list_runs(root: str | Path) -> list[dict[str, str]]:
    """Run directories under `root` (any depth), newest first: task, status, headline metric, date."""
    import time

    rows = []
    base = Path(root)
    if not base.is_dir():
        raise StepwiseError("not a directory", path=root, fix="pass the folder your runs are in")
    for config in sorted(base.rglob(CONFIG)):
        run = RunDir(config.parent)
        stamp = config.stat().st_mtime
        try:
            task, status, metric = _summary(run)
        except StepwiseError as err:  # one damaged run is flagged in its row; the listing goes on
            task, status, metric = "?", DAMAGED, (err.problem.removeprefix("the ")[:60])
        rows.append({"path": str(run.path), "task": task, "status": status, "metric": metric,
                     "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp)), "_t": stamp})
    rows.sort(key=lambda r: -r["_t"])
    return [{k: v for k, v in r.items() if k != "_t"} for r in rows]


def _summary(run: RunDir) -> tuple[str, str, str]:
    """A run's task, status and headline metric for `stepwise runs`."""
    results = run.results() or {}
    task = results.get("task") or str(run.config().get("task") or "?")
    metric = ""
    key = _headline(task)
    for split in ("test", "dev"):
        scores = results.get(split) if isinstance(results.get(split), dict) else {}
        if key in scores and isinstance(scores[key], (int, float)):
            metric = f"{split} {key} {scores[key]:.4f}"
            break
    return task, run.status(), metric


def describe_run(path: str | Path) -> str:
    """`stepwise show`: the run's options, labels and results as text."""
    run = RunDir(path)
    if run.status() == EMPTY:
        raise StepwiseError("not a stepwise run directory", path=path, fix="pass the --out directory of a run")
    lines = [f"run {run.path} ({run.status()})"]
    config = run.config()
    if config:
        lines.append("config: " + ", ".join(f"{k}={v}" for k, v in config.items() if v is not None))
    labels = run.labels()
    if labels is not None:
        lines.append("labels: " + ", ".join(map(str, labels)))
    results = run.results()
    if results:
        for split in ("dev", "test"):
            part = results.get(split)
            scores = {k: v for k, v in (part if isinstance(part, dict) else {}).items() if isinstance(v, (int, float))}
            if scores:
                lines.append(f"{split}: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                                       for k, v in scores.items()))
        train = results.get("train") if isinstance(results.get("train"), dict) else {}
        lines.append(f"train: {train.get('steps')} steps, {train.get('seconds')} s, "
                     f"{train.get('examples_per_s')} examples/s")
    return "\n".join(lines)
