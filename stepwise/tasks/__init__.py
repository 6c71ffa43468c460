"""Tasks are plug-ins to the one training loop: they encode examples, define the head, decode and score.

The registry maps a task name to "module:Class" so that listing the names (for `--task` choices and
validation) imports nothing heavy. Add a task with `register_task("name", "package.module:Class")`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stepwise.tasks.base import Task

_REGISTRY: dict[str, str | type[Task]] = {
    "classify": "stepwise.tasks.classify.task:ClassifyTask",
    "tag": "stepwise.tasks.tag.task:TagTask",
    "edit": "stepwise.tasks.edit.task:EditTask",
    "retrieve": "stepwise.tasks.retrieve.task:RetrieveTask",
    "recommend": "stepwise.tasks.recommend.task:RecommendTask",
}


def register_task(name: str, task: str | type[Task]) -> None:
    """Make a task available to every verb: a Task subclass, or "module:Class" to import on first use."""
    _REGISTRY[name] = task


def task_names() -> list[str]:
    return list(_REGISTRY)


def task_class(name: str) -> type[Task]:
    entry = _REGISTRY.get(name)
    if entry is None:
        from stepwise.errors import StepwiseError

        raise StepwiseError(f"unknown task {name!r}", fix=f"use one of {', '.join(_REGISTRY)}")
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = _REGISTRY[name] = getattr(importlib.import_module(module), attr)
    return entry


def get_task(name: str, labels: list[str], **options: object) -> Task:
    return task_class(name)(labels, **options)


def task_from_meta(meta: dict) -> Task:
    """The task of a saved model, from its stepwise.json (no weights needed)."""
    return get_task(meta["task"], meta["labels"], **meta.get("task_options", {}))


def task_predicting(kind: str) -> str:
    """The first registered task whose predictions are of `kind` ("label", "tags", ...): for verbs that need a
    kind of model, not a particular task (the monitor reads a classifier's labels and a tagger's tags)."""
    return next(n for n in _REGISTRY if getattr(task_class(n), "predicts", None) == kind)


def check_predicts(meta: dict, path: object) -> None:
    """A model of a task with verbs of its own (a retriever ranks passages) has no labels to predict."""
    cls = task_class(meta["task"])
    if getattr(cls, "recipe", None):
        from stepwise.errors import StepwiseError

        raise StepwiseError(f"a {cls.noun} has no labels to predict", path=path, fix=cls.verbs_hint.format(run=path))


def __getattr__(name: str) -> object:  # `from stepwise.tasks import Task` without importing torch eagerly
    if name == "Task":
        from stepwise.tasks.base import Task

        return Task
    if name == "ClassifyTask":
        return task_class("classify")
    raise AttributeError(name)


__all__ = ["Task", "check_predicts", "get_task", "register_task", "task_class", "task_from_meta", "task_names",
           "task_predicting"]
