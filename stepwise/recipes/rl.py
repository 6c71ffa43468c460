"""Recipe: optimize a trained run's policy for a reward with REINFORCE; writes a new run directory.

The fine-tune recipe with the "reinforce" objective, starting from the run's model and label set.
"""

from __future__ import annotations

from typing import Any

from stepwise.config import build_config
from stepwise.recipes.finetune import run_recipe
from stepwise.rundir import Run, RunDir

# Policy-gradient fine-tuning starts from a trained policy: small steps, no warmup, one pass.
RL_DEFAULTS = {"lr": 1e-5, "epochs": 1.0, "warmup_ratio": 0.0}


def rl(run: str, *, callbacks: tuple = (), **options: Any) -> Run:
    """`options` are training options; `reward` defaults to the task's default reward."""
    meta = RunDir.open(run).meta()
    from stepwise.tasks import task_class
    from stepwise.tasks.capabilities import LearnsFromReward, has

    task_cls = task_class(meta["task"])
    default = {"reward": task_cls.rewards[0]} if has(task_cls, LearnsFromReward) else {}  # else refused in prepare
    values = {**RL_DEFAULTS, "task": meta["task"], **default, **options, "init_from": str(run)}
    return run_recipe(build_config(values), objective="reinforce", callbacks=callbacks)
