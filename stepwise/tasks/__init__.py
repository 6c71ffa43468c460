"""Tasks are plug-ins to the one training loop: they encode examples, define the head, decode and score."""

from __future__ import annotations

from stepwise.tasks.base import Task
from stepwise.tasks.classify import ClassifyTask

TASKS: dict[str, type[Task]] = {"classify": ClassifyTask}


def task_class(name: str) -> type[Task]:
    if name == "tag" and "tag" not in TASKS:
        from stepwise.tasks.tag import TagTask

        TASKS["tag"] = TagTask
    return TASKS[name]


def get_task(name: str, labels: list[str], **options: object) -> Task:
    return task_class(name)(labels, **options)


__all__ = ["Task", "ClassifyTask", "get_task", "task_class", "TASKS"]
