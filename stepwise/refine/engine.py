"""A task-agnostic refinement engine.

State = (input, history of predictions). A policy maps the states of the still-active examples to new
predictions and scores; the engine post-processes each step, stops an example when its prediction no
longer changes (or comes back to an earlier one: A → B → A), when its score reaches a confidence
threshold, or when the time budget is spent, and returns either the last step or the best-scoring one
(the guard against error propagation). Text generation can plug in by giving a policy over strings.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


class Policy(Protocol):
    def act(self, indices: list[int], previous: list[Any | None]) -> tuple[list[Any], list[float], list[Any]]:
        """Predictions, scores and raw outputs (e.g. probabilities) for examples `indices`.

        `previous[k]` is the last prediction of example `indices[k]`, or None at the first step.
        """


@dataclass
class StepStats:
    step: int
    active: int
    changed: float  # share of the examples run at this step whose prediction changed
    seconds: float  # cumulative wall time after this step


@dataclass
class RefineResult:
    predictions: list[Any]
    outputs: list[Any]
    steps_used: list[int]
    chosen_step: list[int]
    history: list[list[Any]]
    scores: list[list[float]]
    stats: list[StepStats] = field(default_factory=list)

    def at_step(self, t: int) -> list[Any]:
        """Each example's prediction as of step t (an example that stopped earlier keeps its last one)."""
        return [h[min(t, len(h)) - 1] for h in self.history]

    @property
    def mean_steps(self) -> float:
        return float(np.mean(self.steps_used)) if self.steps_used else 0.0


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return False
    return bool(np.array_equal(np.asarray(a), np.asarray(b)))


def refine(policy: Policy, n: int, *, steps: int, postprocess: Callable[[Any], Any] | None = None,
           stop_on_no_change: bool = True, confidence: float | None = None, time_budget_ms: float | None = None,
           keep: str = "last", initial: list[Any] | None = None) -> RefineResult:
    """Run up to `steps` refinement steps over `n` examples.

    `initial`: each example's state before step 1 (an editor's source sentence), so a first step that
    changes nothing already stops; None means "no prediction yet".
    """
    if steps < 1:
        raise ValueError("steps must be at least 1")
    if keep not in ("last", "best"):
        raise ValueError("keep must be 'last' or 'best'")
    history: list[list[Any]] = [[] for _ in range(n)]
    scores: list[list[float]] = [[] for _ in range(n)]
    outputs: list[list[Any]] = [[] for _ in range(n)]
    active = list(range(n))
    stats: list[StepStats] = []
    start = time.perf_counter()
    for t in range(1, steps + 1):
        if not active:
            break
        if t > 1 and time_budget_ms is not None and (time.perf_counter() - start) * 1000 >= time_budget_ms:
            break
        previous = [history[i][-1] if history[i] else initial[i] if initial else None for i in active]
        preds, step_scores, raw = policy.act(active, previous)
        still = []
        changed = 0
        for i, prev, pred, score, out in zip(active, previous, preds, step_scores, raw):
            pred = postprocess(pred) if postprocess else pred
            same = _same(prev, pred)
            changed += prev is not None and not same
            # back to an earlier state (A → B → A): more steps would only cycle
            cycle = not same and any(_same(h, pred) for h in history[i][:-1] + ([initial[i]] if initial else []))
            history[i].append(pred)
            scores[i].append(float(score))
            outputs[i].append(out)
            done = (stop_on_no_change and (same or cycle)) or (confidence is not None and score >= confidence)
            if not done:
                still.append(i)
        stats.append(StepStats(t, len(active), changed / len(active), time.perf_counter() - start))
        active = still
    chosen = [int(np.argmax(s)) if keep == "best" else len(s) - 1 for s in scores]
    return RefineResult(predictions=[h[c] for h, c in zip(history, chosen)],
                        outputs=[o[c] for o, c in zip(outputs, chosen)], steps_used=[len(h) for h in history],
                        chosen_step=[c + 1 for c in chosen], history=history, scores=scores, stats=stats)
