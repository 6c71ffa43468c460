"""The LLM as a refinement policy, and the hybrid loops with a fine-tuned stepwise model.

`LLMPolicy.act` renders one prompt per active example (the draft template at its first step, the revise
template after), asks the client, and validates each reply with the task (`llm_parse`). An invalid reply or
a failed request keeps the example's previous prediction and its reported probabilities (at step 1 with no
previous one: the majority label of its few-shot examples, reported with the labels' shares among them, not as
a certainty; an editor's source sentence) and is counted. Its score is 1
for a valid reply and 0 for a fallback, so `--keep best` prefers valid steps.

Hybrids (`--hybrid-threshold τ`):
* model-first: step 1 by the fine-tuned model; an example whose confidence is below τ goes on to the LLM
  (revise prompt, the model's prediction as the draft), the others stop there. The LLM's steps keep the
  model's step-1 score, so an example stops when the LLM leaves it unchanged.
* llm-first: step 1 by the LLM; from step 2 the fine-tuned model replaces the LLM's prediction where it is
  at least τ confident (an editor edits the LLM's sentence further).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from stepwise.example import Example
from stepwise.llm.prompts import Prompts, Shot, shot_of
from stepwise.tasks.base import Task


class LLMStats:
    """What the LLM did: requests, invalid replies and failed requests (both fell back), tokens, time; per step."""

    def __init__(self) -> None:
        self.steps: dict[int, Counter] = {}
        self.errors: Counter = Counter()

    def add(self, step: int, **counts: float) -> None:
        self.steps.setdefault(step, Counter()).update(counts)

    def total(self, key: str) -> float:
        return sum(c[key] for c in self.steps.values())

    def as_dict(self) -> dict[str, Any]:
        keys = ("requests", "valid", "invalid", "failed", "tokens", "seconds")
        per_step = [{"step": s, **{k: round(c[k], 3) if k == "seconds" else int(c[k]) for k in keys}}
                    for s, c in sorted(self.steps.items())]
        return {**{k: round(self.total(k), 3) if k == "seconds" else int(self.total(k)) for k in keys},
                "fallbacks": int(self.total("invalid") + self.total("failed")), "errors": dict(self.errors),
                "per_step": per_step}


class LLMPolicy:
    def __init__(self, task: Task, examples: list[Example], client: Any, prompts: Prompts,
                 shots: list[list[Example]], rendered: dict[int, Shot] | None = None) -> None:
        """`shots[i]`: example i's few-shot examples; `rendered`: a cache of their renderings by `id()`, kept by
        the owner of the examples (the same pool example is a shot for many inputs)."""
        self.task, self.examples, self.client, self.prompts = task, examples, client, prompts
        rendered = {} if rendered is None else rendered
        self.shots = [[_render(task, s, rendered) for s in row] for row in shots]
        self.defaults = [task.llm_fallback(ex, row) for ex, row in zip(examples, shots)]
        self.guesses = [task.llm_fallback_output(d, ex, row) for d, ex, row in zip(self.defaults, examples, shots)]
        #: the output last reported per example (a hybrid's model step too): a fallback that keeps the previous
        #: prediction keeps its reported confidence instead of claiming probability 1
        self.outputs: list[Any] = [None] * len(examples)
        self.seen = [0] * len(examples)
        self.step = 0
        self.stats = LLMStats()

    def act(self, indices: list[int], previous: list[Any | None], *, step: int | None = None,
            critiques: list[str | None] | None = None) -> tuple[list[Any], list[float], list[Any]]:
        self.step += 1
        step = step or self.step
        start = time.perf_counter()
        prompts, budgets = [], []
        for k, (i, prev) in enumerate(zip(indices, previous)):
            ex = self.examples[i]
            revise = self.seen[i] > 0 and prev is not None
            prompts.append(self.prompts.render("revise" if revise else "draft", example=ex, shots=self.shots[i],
                                               previous=self.task.llm_answer(prev, ex) if revise else None,
                                               critique=critiques[k] if critiques else None))
            budgets.append(self.task.llm_max_tokens(ex))
            self.seen[i] += 1
        replies = self.client.complete(prompts, max_tokens=budgets, stop=["\n"])
        preds, scores, outs = [], [], []
        counts: Counter = Counter(requests=len(prompts))
        for i, prev, reply in zip(indices, previous, replies):
            ex = self.examples[i]
            parsed = None if reply.text is None else self.task.llm_parse(reply.text, ex)
            counts["tokens"] += reply.tokens
            if reply.text is None:
                counts["failed"] += 1
                self.stats.errors[reply.error or "error"] += 1
            elif parsed is None:
                counts["invalid"] += 1
            else:
                counts["valid"] += 1
            if parsed is not None:
                pred, out = parsed, self.task.llm_output(parsed, ex)
            elif prev is not None:
                pred = prev
                out = self.outputs[i] if self.outputs[i] is not None else self.task.llm_output(prev, ex)
            else:
                pred, out = self.defaults[i], self.guesses[i]
            self.outputs[i] = out
            preds.append(pred)
            scores.append(1.0 if parsed is not None else 0.0)
            outs.append(out)
        counts["seconds"] = time.perf_counter() - start
        self.stats.add(step, **counts)
        return preds, scores, outs


def _render(task: Task, example: Example, cache: dict[int, Shot]) -> Shot:
    if id(example) not in cache:
        cache[id(example)] = shot_of(task, example)
    return cache[id(example)]


class ModelFirstPolicy:
    """Step 1 by the fine-tuned model; later steps by the LLM (run with `confidence=τ`, so sure ones stop)."""

    def __init__(self, model: Any, llm: LLMPolicy, threshold: float) -> None:
        self.model, self.llm, self.threshold = model, llm, threshold
        self.step = 0
        self.first: dict[int, float] = {}

    def act(self, indices: list[int], previous: list[Any | None]) -> tuple[list[Any], list[float], list[Any]]:
        self.step += 1
        if self.step == 1:
            preds, scores, outs = self.model.act(indices, previous)
            self.first.update(zip(indices, scores))
            for i, out in zip(indices, outs):
                self.llm.seen[i] = 1  # the model's prediction is the draft the LLM revises
                self.llm.outputs[i] = out  # and its probabilities stand if the LLM gives no valid revision
            return preds, scores, outs
        critiques = [f"the fine-tuned model's confidence in this draft: {self.first[i]:.2f}" for i in indices]
        preds, _, outs = self.llm.act(indices, previous, step=self.step, critiques=critiques)
        return preds, [self.first[i] for i in indices], outs


class LLMFirstPolicy:
    """Step 1 by the LLM; later steps by the fine-tuned model where it is at least τ confident."""

    def __init__(self, model: Any, llm: LLMPolicy, threshold: float) -> None:
        self.model, self.llm, self.threshold = model, llm, threshold
        self.step = 0
        self.replaced = 0

    def act(self, indices: list[int], previous: list[Any | None]) -> tuple[list[Any], list[float], list[Any]]:
        self.step += 1
        if self.step == 1:
            return self.llm.act(indices, previous)
        preds, scores, outs = self.model.act(indices, previous)
        keep = [s < self.threshold for s in scores]
        self.replaced += sum(not k for k in keep)
        return ([prev if k else p for p, prev, k in zip(preds, previous, keep)], scores,
                [self.llm.task.llm_output(prev, self.llm.examples[i]) if k else o
                 for i, o, prev, k in zip(indices, outs, previous, keep)])
