"""The PyTorch backend: the task model itself, in eval mode, under the run's precision.

Precision "auto" is decided on the first batch, by timing the forward pass in fp32 and bf16 at that
batch's shape (stepwise.precision; cached per host and model shape, so only a host's first call pays).
"""

from __future__ import annotations

import numpy as np
import torch

from stepwise.precision import autocast


class TorchBackend:
    name = "torch"

    def __init__(self, model: torch.nn.Module, precision: str = "fp32") -> None:
        self.model = model
        self.precision = precision
        self.precision_record: dict | None = None  # how "auto" was decided, once it has been

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(self.model.input_names)

    @torch.inference_mode()
    def run(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        was_training = self.model.training
        self.model.eval()
        try:
            inputs = {name: torch.from_numpy(batch[name]) for name in self.input_names if name in batch}
            if self.precision == "auto":
                from stepwise.precision import measure_precision

                rows, width = inputs["input_ids"].shape
                self.precision, self.precision_record = measure_precision("auto", self.model, batch=rows,
                                                                          length=width, train=False)
            with autocast(self.precision):
                logits = self.model(**inputs)
        finally:
            self.model.train(was_training)
        return logits.float().numpy()
