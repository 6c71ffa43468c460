"""A trained run with an LLM policy in its refinement loop: `LLMPredictor(predictor, client, ...).run(examples)`.

It answers `run` and `task` like a `Predictor`, so the `evaluate` and `predict` recipes take it as is; the run
gives the task (labels) and, for the hybrids, the fine-tuned model.
"""

from __future__ import annotations

from typing import Any

from stepwise.errors import StepwiseError
from stepwise.example import Example
from stepwise.llm.fewshot import ShotSelector
from stepwise.llm.policy import LLMFirstPolicy, LLMPolicy, ModelFirstPolicy
from stepwise.llm.prompts import Prompts
from stepwise.predictor import PredictOptions, Predictor, _has_text, _with_gaps
from stepwise.refine import RefineResult, refine

HYBRIDS = ("model-first", "llm-first")


class LLMPredictor:
    def __init__(self, predictor: Predictor, client: Any, *, pool: list[Example] | None = None, shots: int = 4,
                 selection: str = "encoder", template: str | None = None, revise_template: str | None = None,
                 hybrid: str | None = None, threshold: float | None = None, seed: int = 0,
                 cache_dir: str | None = None) -> None:
        if hybrid is not None and hybrid not in HYBRIDS:
            raise StepwiseError(f"unknown hybrid {hybrid!r}", fix=f"use one of {', '.join(HYBRIDS)}")
        if hybrid is not None and threshold is None:
            raise StepwiseError("a hybrid loop needs a confidence threshold", fix="add --hybrid-threshold, e.g. 0.9")
        self.predictor, self.task, self.client = predictor, predictor.task, client
        self.pool = [ex for ex in (pool or []) if _has_text(ex) and ex.label is not None]
        if shots and not self.pool:
            raise StepwiseError(f"--shots {shots} needs labeled examples to choose from",
                                fix="pass --shots-file (the training file), or --shots 0 for zero-shot")
        self.k = shots
        self.selector = ShotSelector([self.task.llm_text(ex) for ex in self.pool], shots, selection, seed=seed,
                                     cache_dir=cache_dir)
        self.prompts = Prompts(self.task, template, revise_template)
        self.hybrid, self.threshold = hybrid, threshold
        self.rendered: dict[int, Any] = {}  # pool example id → its rendering as a shot (self.pool keeps them alive)
        self.last: LLMPolicy | None = None
        self.policy: Any = None

    def _exclude(self, examples: list[Example]) -> list[set[int]]:
        """A pool example identical to the input is never its own shot (no answer leaks into the prompt)."""
        where: dict[str, list[int]] = {}
        for i, ex in enumerate(self.pool):
            where.setdefault(self.task.llm_text(ex), []).append(i)
        return [set(where.get(self.task.llm_text(ex), [])) for ex in examples]

    def make_policy(self, examples: list[Example]) -> Any:
        picks = self.selector.select([self.task.llm_text(ex) for ex in examples], exclude=self._exclude(examples))
        llm = LLMPolicy(self.task, examples, self.client, self.prompts, [[self.pool[j] for j in row] for row in picks],
                        self.rendered)
        self.last = llm
        if self.hybrid is None:
            return llm
        p = self.predictor
        model = self.task.policy(p.backend, p.tokenizer, examples, p.encode(examples), batch_size=p.batch_size,
                                 max_length=p.max_length)
        cls = ModelFirstPolicy if self.hybrid == "model-first" else LLMFirstPolicy
        return cls(model, llm, self.threshold)

    def run(self, examples: list[Example], options: PredictOptions | None = None) -> RefineResult:
        options = options or PredictOptions()
        present = [ex for ex in examples if _has_text(ex)]
        if not present:
            return _with_gaps(RefineResult([], [], [], [], [], []), [False] * len(examples))
        self.policy = self.make_policy(present)
        confidence = self.threshold if self.hybrid == "model-first" else options.confidence
        # an editor's source is the state before step 1, so an LLM that changes nothing stops there; in a hybrid
        # the next step is another policy, so step 1 never stops an example for changing nothing
        initial = None if self.hybrid else self.task.initial_states(present)
        result = refine(self.policy, len(present), steps=options.steps or 1, confidence=confidence,
                        time_budget_ms=options.time_budget_ms, keep=options.keep, initial=initial)
        return result if len(present) == len(examples) else _with_gaps(result, [_has_text(ex) for ex in examples])

    def report(self) -> dict[str, Any]:
        """The LLM's counts for the last run: requests, valid/invalid replies, failed requests, tokens, seconds."""
        out = self.last.stats.as_dict() if self.last else {}
        if isinstance(self.policy, LLMFirstPolicy):
            out["replaced_by_model"] = self.policy.replaced
        return out
