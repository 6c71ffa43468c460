"""The training data of a run: train/dev/test read, checked against the task, split 7:2:1 when needed.

Nothing here writes: the recipe saves the split into the run directory once everything is valid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stepwise.data.split import stratified_split
from stepwise.errors import StepwiseError
from stepwise.example import Example

CONLL_SUFFIXES = {".conll", ".bio", ".iob", ".iobes", ".conllu"}


TAG = re.compile(r"^(O|[BIES]-\S+)$")


def infer_task(train: str, input_format: str | None) -> str:
    """The task a file implies when --task is not given: CoNLL → tag, anything else → classify."""
    if input_format == "conll" or Path(train).suffix.lower() in CONLL_SUFFIXES:
        return "tag"
    if input_format is None and Path(train).suffix.lower() in (".txt", "") and looks_like_conll(train):
        return "tag"
    return "classify"


def looks_like_conll(path: str) -> bool:
    """A -DOCSTART- line, or token lines without tabs whose last column is a BIO/IOBES tag."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as fh:
            lines = [ln.strip() for _, ln in zip(range(200), fh) if ln.strip()]
    except OSError:
        return False
    if not lines:
        return False
    if lines[0].startswith("-DOCSTART-"):
        return True
    fields = [ln.split() for ln in lines[:50]]
    return all("\t" not in ln for ln in lines[:50]) and all(len(f) >= 2 and TAG.match(f[-1]) for f in fields)


@dataclass
class Splits:
    """Examples per split; `sources` names the file each came from (for error messages)."""

    data: dict[str, list[Example]]
    sources: dict[str, str]
    split_made: bool = False
    cleaned: dict[str, Any] = field(default_factory=dict)


def read_splits(config: Any, task_cls: Any) -> Splits:
    """Read --train/--dev/--test for a task class; with only --train, split it (stratified, seeded)."""
    def read(path: str) -> list[Example]:
        examples = task_cls.read_file(path, targets=targets.get(path), **config.read_options())
        task_cls.check_data(examples, path)
        return examples

    from stepwise.tasks.base import check_classes

    targets = {config.train: config.train_target, config.dev: config.dev_target, config.test: config.test_target}

    train = read(config.train)
    check_classes(task_cls.collect_labels(train), config.train)  # before splitting: the split would fail first
    cleaned = {"train": dict(getattr(train, "cleaned", {}))}
    sources = {"train": config.train, "dev": config.dev or config.train, "test": config.test or config.train}
    if config.dev is None:
        train, dev, test = stratified_split(train, config.seed, stratum=task_cls.stratum)
        data = {"train": train, "dev": dev}
        if config.test is None and test:
            data["test"] = test
        if not dev:
            raise StepwiseError(f"too few examples ({len(train)}) to split off a dev set", path=config.train,
                                fix="add examples or pass --dev")
    else:
        data = {"train": train, "dev": read(config.dev)}
    if config.test is not None:
        data["test"] = read(config.test)
    for split in ("dev", "test"):
        if split in data and getattr(data[split], "cleaned", None):
            cleaned[split] = dict(data[split].cleaned)
    return Splits(data, sources, split_made=config.dev is None,
                  cleaned={k: v for k, v in cleaned.items() if v})
