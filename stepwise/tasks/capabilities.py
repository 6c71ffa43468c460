"""Optional capabilities: what a task can do beyond the contract in base.py, each a small protocol.

A task implements a capability by having its methods (the LLM one by inheriting `PromptsLLMDefaults` for the
shared defaults); the verb that needs it asks `require(task, Capability, ...)`, which refuses a task without
it in one line, and the conformance suite checks each capability a task has (tests/test_tasks.py).

* Refines:          a previous prediction as a per-token model input (`--refine-steps` > 1)
* PromptsLLM:       prompting an LLM (`--llm`): what a prompt shows, and how a reply is read
* LearnsFromReward: policy-gradient training (`stepwise rl`, `--reward`)
* Augments:         noisy copies of training examples (`--augment`)
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from stepwise.errors import StepwiseError
from stepwise.example import Example, Feature


@runtime_checkable
class Refines(Protocol):
    def slice_prediction(self, feature: Feature, example_ids: Any) -> Any:
        """The part of an example's prediction that one feature (window) covers."""

    def prev_ids(self, feature: Feature, ids: Any) -> list[int]:
        """Per-token ids of the previous prediction for `feature` (label id + 1; 0 = none yet)."""


@runtime_checkable
class PromptsLLM(Protocol):
    #: label → the word an LLM sees for it (e.g. SST-2's 0/1 as negative/positive); unmapped labels show as is
    label_words: dict[str, str]

    def word(self, label: str) -> str:
        """A label as a prompt shows it."""

    def llm_text(self, example: Example) -> str:
        """The input as a prompt shows it."""

    def llm_gold(self, example: Example) -> Any:
        """A labeled example's answer, as prediction ids (a few-shot example's answer)."""

    def llm_wrong(self, example: Example) -> Any:
        """A wrong first draft for a few-shot example of the revise prompt (ids)."""

    def llm_fallback(self, example: Example, shots: list[Example]) -> Any:
        """The prediction (ids) when an LLM gives no valid answer at the first step."""

    def llm_answer(self, ids: Any, example: Example) -> str:
        """A prediction (ids) as a prompt shows it."""

    def llm_parse(self, reply: str, example: Example) -> Any | None:
        """The prediction ids in an LLM's reply, or None when the reply is not a valid answer."""

    def llm_max_tokens(self, example: Example) -> int:
        """Generation budget for one answer."""

    def llm_output(self, ids: Any, example: Example) -> Any:
        """The raw output of an LLM step, in the form records and `to_labels` read (one-hot probabilities)."""

    def llm_fallback_output(self, ids: Any, example: Example, shots: list[Example]) -> Any:
        """The output reported for a fallback: no more confident than what it was drawn from (not one-hot)."""


class PromptsLLMDefaults:
    """The shared parts of PromptsLLM: labels shown as themselves (or their `label_words`), the input as its
    text, a short answer. A task still writes the other llm_* methods and its templates/ (draft, revise)."""

    label_words: dict[str, str] = {}

    def word(self, label: str) -> str:
        return self.label_words.get(label, label)

    def llm_text(self, example: Example) -> str:
        return str(example.text)

    def llm_max_tokens(self, example: Example) -> int:
        return 8

    def llm_fallback_output(self, ids: Any, example: Example, shots: list[Example]) -> Any:
        return self.llm_output(ids, example)  # type: ignore[attr-defined]


@runtime_checkable
class LearnsFromReward(Protocol):
    #: the built-in rewards that make sense for this task's predictions; the first is the default
    rewards: tuple[str, ...]

    def perfect(self, gold: Any) -> Any:
        """The prediction that matches one gold item exactly (a reward's sanity check)."""

    def action_outcomes(self, features: list[Feature], **follow: Any) -> Any:
        """None when the actions (labels, tags) are the prediction and the gold labels its gold; else
        f(pair_ids, action rows) -> (predictions, golds) for tasks whose actions build the prediction.
        `follow` (config, model, tokenizer, precision): an iterative task's prediction is what its later
        passes make of the actions' outcome."""


@runtime_checkable
class Augments(Protocol):
    def augment(self, examples: list[Example], rate: float, seed: int) -> list[Example]:
        """A noisy copy of each training example (`--augment`): learner noise at the default rates × `rate`."""


def has(task: Any, capability: type) -> bool:
    """Whether a task (class or instance) has a capability."""
    return isinstance(task, capability) or (isinstance(task, type) and all(
        hasattr(task, name) for name in _members(capability)))


def require(task: Any, capability: type, what: str, fix: str | None = None) -> None:
    """Refuse, in one line, a task without `capability` for `what` (e.g. "--augment")."""
    if not has(task, capability):
        refusal = getattr(task, "refusals", {}).get(capability.__name__)
        raise StepwiseError(f"{what} is not available for {task.noun} runs", fix=refusal or fix or f"drop {what}")


def _members(capability: type) -> list[str]:
    return [n for n in [*capability.__dict__.get("__annotations__", {}), *vars(capability)]
            if not n.startswith("_") and n not in ("__annotations__",)]
