"""Resumable training state, written atomically at every evaluation."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stepwise.files import atomic_write


def rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])


class Checkpointer:
    """Model, optimizer, loop state and every random generator the run uses, in one file.

    `generators` are extra `random.Random` objects owned by components (e.g. the refiner's corruption),
    saved and restored by name so a resumed run draws the same numbers.
    """

    def __init__(self, path: Path, generators: dict[str, random.Random] | None = None) -> None:
        self.path = Path(path)
        self.generators = dict(generators or {})

    def save(self, state: dict[str, Any], model: torch.nn.Module | None = None,
             optimizer: torch.optim.Optimizer | None = None) -> None:
        """With no model, only the state: a finished run's weights already live in the run's model/."""
        payload: dict[str, Any] = {"state": state, "rng": rng_state(),
                                   "generators": {k: g.getstate() for k, g in self.generators.items()}}
        if model is not None and optimizer is not None:
            payload.update(model=model.state_dict(), optimizer=optimizer.state_dict())
        atomic_write(self.path, lambda tmp: torch.save(payload, tmp))

    def load(self) -> dict[str, Any] | None:
        if not self.path.is_file():
            return None
        try:
            payload = torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception:  # noqa: BLE001 — a truncated or foreign file is a user-facing problem
            from stepwise.errors import StepwiseError

            raise StepwiseError("the checkpoint is damaged and cannot be resumed", path=self.path,
                                fix="pass --overwrite to start the run over") from None
        set_rng_state(payload["rng"])
        for name, generator in self.generators.items():
            if name in payload.get("generators", {}):
                generator.setstate(payload["generators"][name])
        return payload
