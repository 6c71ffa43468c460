"""The training data of a run: train/dev/test read, checked against the task, split 7:2:1 when needed.

Nothing here writes: the recipe saves the split into the run directory once everything is valid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stepwise.data.split import stratified_split
from stepwise.errors import StepwiseError
from stepwise.example import Example


def infer_task(train: str, input_format: str | None) -> str:
    """The task a file implies when --task is not given: the first registered task that claims it (a tagger
    claims CoNLL files), else the first registered task (the classifier)."""
    from stepwise.tasks import task_class, task_names

    names = task_names()
    return next((name for name in names if task_class(name).claims_file(train, input_format)), names[0])


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
