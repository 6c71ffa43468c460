"""Where stepwise may write: one rule for the output path of every verb, checked before anything is written.

Stepwise owns three kinds of directories: a run directory (`train`/`rl`/`distill`/`prune --out`), its
model directory (RUN/model: weights + stepwise.json) and an export (`export --out`: stepwise.json that
records the export, ONNX or Hugging Face files). An output may be such a place only when it is the
target of the verb that makes it (a run for a run, an earlier export for an export, replaced); it may
never land inside one, with two exceptions:

* `stepwise export RUN` writes into RUN/onnx, RUN/onnx-int8 or RUN/hf (its defaults), and only for RUN;
* a file (predictions, a plot, a pairs file, a monitor database) may sit at the top of a run directory
  beside the run's files, under a name the run does not use.

Kept free of torch: a wrong --out is reported at once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from stepwise.errors import StepwiseError
from stepwise.layout import CHECKPOINT, CONFIG, ENTRIES, EXPORTS, LABELS, METRICS, MODEL, ONNX_FILE, RESULTS

RUN, EXPORT, MODEL_DIR, FILE, SEARCH, INDEX = "run", "export", "model", "file", "search", "index"
NOUNS = {RUN: "a run directory", EXPORT: "an export", MODEL_DIR: "a run's model directory",
         SEARCH: "a search directory", INDEX: "a passage index"}


def place_kind(path: str | Path) -> str | None:
    """RUN, EXPORT or MODEL_DIR for a directory stepwise wrote, else None (a file, a plain directory, nothing)."""
    from stepwise.modeldir import META_FILE

    p = Path(path)
    if not p.is_dir():
        return None
    if (p / "index.json").is_file():  # stepwise.tasks.retrieve.index.INDEX_FILE (kept free of numpy here)
        return INDEX
    if (p / META_FILE).is_file():
        return EXPORT if _is_export(p) else MODEL_DIR
    if ((p / MODEL / META_FILE).is_file() or (p / CHECKPOINT).is_file() or (p / RESULTS).is_file()
            or ((p / CONFIG).is_file() and ((p / LABELS).is_file() or (p / METRICS).is_file()))):
        return RUN
    return None


def _is_export(p: Path) -> bool:
    """An export records itself in stepwise.json ("export"); a run's model directory does not."""
    from stepwise.modeldir import META_FILE

    if (p / ONNX_FILE).is_file():
        return True
    try:
        meta = json.loads((p / META_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False  # damaged: not known to be an export, so never replaced as one
    return isinstance(meta, dict) and isinstance(meta.get("export"), dict)


def check_output(path: str | Path, flag: str, makes: str, *, source: str | Path | None = None,
                 inputs: Sequence[str | Path] = ()) -> None:
    """Refuse an output path that would land in (or be) a run, model directory or export it is not meant for.

    `makes`: RUN, EXPORT, SEARCH (directories the verb creates or continues) or FILE. `source`: the run an
    export (or rl/distill/prune) starts from. `inputs`: files or directories the verb reads, never written over.
    Also refused: an output under a regular file.
    """
    from stepwise.files import nearest_existing

    target = Path(path).absolute()
    parent = nearest_existing(target.parent)
    if parent.exists() and not parent.is_dir():
        raise StepwiseError(f"cannot write {flag}: {parent} is a file, not a directory", path=path,
                            fix=f"choose another {flag}")
    if makes != FILE and target.is_file():
        raise StepwiseError(f"{flag} is a file, not a directory", path=path, fix=f"give {flag} a directory")
    real = _real(target)
    for item, what in [*((i, "the input") for i in inputs), *([(source, "the run this command starts from")]
                                                              if source is not None else [])]:
        if str(item) != "-" and real == _real(Path(item).absolute()):
            raise StepwiseError(f"{flag} is {what}: writing would destroy it", path=path, fix=f"choose another {flag}")
    kind = place_kind(real)
    if kind is not None and kind != makes:
        raise StepwiseError(f"{flag} is {NOUNS[kind]}, not {NOUNS.get(makes, 'a file')}: writing there would destroy "
                            "it", path=path, fix=f"choose a new {flag}")
    for above in real.parents:
        outer = place_kind(above)
        if outer is None:
            continue
        if outer == RUN and makes == EXPORT and source is not None and above == _real(Path(source).absolute()) \
                and real.parent == above and real.name in EXPORTS.values():
            continue  # the run's own default export directory
        if outer == RUN and makes == FILE and real.parent == above and real.name not in ENTRIES \
                and not real.name.startswith("."):
            continue  # a report or data file beside the run's files
        raise StepwiseError(f"{flag} is inside {NOUNS[outer]} ({above}): writing there would damage it",
                            path=path, fix=f"choose {flag} outside {above}" + (
                                f" (or leave out --out: the export goes to {above}/onnx)"
                                if makes == EXPORT and outer == RUN and source is not None
                                and above == _real(Path(source).absolute()) else ""))


def _real(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path
