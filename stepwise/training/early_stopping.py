"""When to evaluate, whether the dev score improved, and when to stop."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EarlyStopping:
    """Tracks the best dev score; `patience` evaluations without improvement stop training (None: never)."""

    patience: int | None
    eval_every: int | None  # optimizer steps between evaluations; None: at the end of every epoch

    def due(self, step: int, total: int, epoch_ended: bool) -> bool:
        """Evaluate now? The final evaluation after the last step is the loop's, not this policy's."""
        if step >= total:
            return False
        if self.eval_every:
            return not epoch_ended and step % self.eval_every == 0
        return epoch_ended

    def update(self, best: float | None, bad_evals: int, value: float) -> tuple[bool, int, bool]:
        """(improved, evaluations without improvement, stop) after a dev score of `value`."""
        improved = best is None or value > best
        bad = 0 if improved else bad_evals + 1
        return improved, bad, self.patience is not None and bad >= self.patience
