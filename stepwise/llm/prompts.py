"""Prompt templates (Jinja2) per task: `draft.j2` for step 1 and `revise.j2` for step t > 1, shipped in the
templates/ folder of the task's package (stepwise/tasks/classify/templates/, ...); a user's own files replace
either."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from stepwise.errors import StepwiseError
from stepwise.example import Example
from stepwise.tasks.base import Task


@dataclass
class Shot:
    text: str
    answer: str
    draft: str  # what a revise prompt shows as this example's first draft


def shot_of(task: Task, example: Example) -> Shot:
    """A labeled example as a prompt shows it; its revise draft is the gold answer or a wrong one, by a hash of
    the text (deterministic, about half each)."""
    gold = task.llm_gold(example)
    text = task.llm_text(example)
    wrong = zlib.crc32(text.encode()) % 2 == 1
    return Shot(text, task.llm_answer(gold, example), task.llm_answer(task.llm_wrong(example) if wrong else gold,
                                                                      example))


def _load(source: str, name: str) -> Any:
    from jinja2 import Environment, StrictUndefined, TemplateError

    env = Environment(undefined=StrictUndefined, keep_trailing_newline=False, autoescape=False)
    try:
        return env.from_string(source)
    except TemplateError as err:
        raise StepwiseError(f"template does not parse: {err}", path=name, fix="fix the Jinja2 syntax") from None


class Prompts:
    def __init__(self, task: Task, draft: str | None = None, revise: str | None = None) -> None:
        from stepwise.tasks.capabilities import PromptsLLM, require

        require(task, PromptsLLM, "an LLM policy")
        self.task = task
        self.templates = {kind: self._read(task, kind, path) for kind, path in (("draft", draft), ("revise", revise))}

    @staticmethod
    def _read(task: Task, kind: str, path: str | None) -> Any:
        if path is None:
            resource = files(type(task).__module__.rpartition(".")[0]).joinpath("templates", f"{kind}.j2")
            if not resource.is_file():
                raise StepwiseError(f"no built-in {kind} template for {task.noun} runs",
                                    fix="pass your own with --template/--revise-template")
            return _load(resource.read_text(encoding="utf-8"), str(resource))
        p = Path(path)
        if not p.is_file():
            raise StepwiseError("template file not found", path=path, fix="pass a Jinja2 text file")
        return _load(p.read_text(encoding="utf-8"), path)

    def render(self, kind: str, *, example: Example, shots: list[Shot], previous: str | None = None,
               critique: str | None = None) -> str:
        from jinja2 import TemplateError

        labels = [self.task.word(label) for label in self.task.labels]
        try:
            return self.templates[kind].render(labels=labels, shots=shots, text=self.task.llm_text(example),
                                               previous=previous, critique=critique).rstrip(" ")
        except TemplateError as err:
            raise StepwiseError(f"the {kind} template fails to render: {err}",
                                fix="use only labels, shots (text, answer, draft), text, previous, critique") from None
