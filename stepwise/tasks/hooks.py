"""What a task adds to the fine-tuning recipe around the shared loop (`Task.training_hooks`).

The recipe (stepwise.recipes.finetune) calls these at fixed points and knows nothing of what a task does
there: a tagger with document context trains fold taggers before the loop and fits a second step after it.
The default adds nothing.
"""

from __future__ import annotations

from typing import Any


class TrainingHooks:
    """No-op hooks; a task returns a subclass from `training_hooks(config)` when it has steps of its own."""

    #: the key its notes get in results.json (None: no notes)
    name: str | None = None

    def check(self, config: Any, data: dict[str, list[Any]], sources: dict[str, str], *, distributed: bool) -> None:
        """Refuse what cannot be done with these options and data (examples and the file of each split), before
        anything is written; `distributed`: under torchrun."""

    def refine_steps(self, steps: int) -> int:
        """Prediction steps of the model this run trains from scratch (a second step of the task's own)."""
        return steps

    def before_fit(self, job: Any, run: Any, train_features: list[dict], precision: str, resuming: bool,
                   step_inputs: Any) -> tuple[Any, dict[str, Any] | None]:
        """The loop's `step_inputs` (the task's, by default) and notes, just before the loop starts."""
        return step_inputs, None

    def after_fit(self, job: Any, run: Any, best: Any, metric: str, train_seconds: float,
                  notes: dict[str, Any] | None) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """After the loop, with the best model loaded: (notes for results.json, dev's score when the task
        scored dev itself; None: the recipe scores it)."""
        return notes, None

    def finish(self, run: Any) -> None:
        """The run's results are written: remove what only training needed."""
