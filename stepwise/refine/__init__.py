"""Multi-step refinement at inference: y_t = f(x, y_{t-1}), with stop rules and a guard against drift."""

from stepwise.refine.engine import Policy, RefineResult, refine

__all__ = ["Policy", "RefineResult", "refine"]
