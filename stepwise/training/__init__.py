"""The multi-step optimization loop and its small parts (schedule, optimizer, checkpoints, FLOPs)."""

from stepwise.training.loop import LoopState, fit
from stepwise.training.schedule import lr_at

__all__ = ["LoopState", "fit", "lr_at"]
