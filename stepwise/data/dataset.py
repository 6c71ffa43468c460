"""The training data of a run: train/dev/test read, checked against the task, split 7:2:1 when needed.

Nothing here writes: the recipe saves the split into the run directory once everything is valid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stepwise.data.readers import Example, read_examples
from stepwise.data.split import stratified_split
from stepwise.errors import StepwiseError

CONLL_SUFFIXES = {".conll", ".bio", ".iob", ".iobes", ".conllu"}


def infer_task(train: str, input_format: str | None) -> str:
    """The task a file implies when --task is not given: CoNLL → tag, anything else → classify."""
    if input_format == "conll" or Path(train).suffix.lower() in CONLL_SUFFIXES:
        return "tag"
    return "classify"


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
        examples = read_examples(path, prefer=task_cls.read_format, **config.read_options())
        task_cls.check_data(examples, path)
        return examples

    train = read(config.train)
    classes = task_cls.collect_labels(train)
    if len(classes) < 2:
        raise StepwiseError(f"need at least 2 classes, found {len(classes)} ({', '.join(classes) or 'none'})",
                            path=config.train, fix="add examples of another class")
    cleaned = {"train": dict(getattr(train, "cleaned", {}))}
    sources = {"train": config.train, "dev": config.dev or config.train, "test": config.test or config.train}
    if config.dev is None:
        train, dev, test = stratified_split(train, config.seed)
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
