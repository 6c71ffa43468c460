"""The PyTorch backend: the task model itself, in eval mode, under the run's precision."""

from __future__ import annotations

import numpy as np
import torch

from stepwise.precision import autocast


class TorchBackend:
    name = "torch"

    def __init__(self, model: torch.nn.Module, precision: str = "fp32") -> None:
        self.model = model
        self.precision = precision

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(self.model.input_names)

    @torch.inference_mode()
    def run(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        was_training = self.model.training
        self.model.eval()
        try:
            inputs = {name: torch.from_numpy(batch[name]) for name in self.input_names if name in batch}
            with autocast(self.precision):
                logits = self.model(**inputs)
        finally:
            self.model.train(was_training)
        return logits.float().numpy()
