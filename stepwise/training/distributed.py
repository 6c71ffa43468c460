"""Several processes training one model (torchrun), through torch.distributed: who does what.

`torchrun --nproc-per-node N -m stepwise train ...` starts N copies of the unchanged command; torchrun's
environment (RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, ...) says which one each is. Every rank
reads and encodes the data and trains on its shard of every global batch (DistributedDataParallel
averages the gradients); rank 0 alone writes the run directory, logs, checkpoints and evaluates, and
tells the others what it decided. One process (no torchrun) is the world of one: every call below is a
no-op there, so the loop reads the same either way.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """DDP around the model (it starts every rank from rank 0's weights); the model itself in one process."""
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, find_unused_parameters=False)

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sums over the ranks."""
        if not self.active:
            return values
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's `value`, on every rank (any picklable object)."""
        if not self.active:
            return value
        import torch.distributed as dist

        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def on_main(self, fn: Any) -> Any:
        """`fn()` on rank 0, its result on every rank; an error there is raised on every rank (none waits forever)."""
        if not self.active:
            return fn()
        from stepwise.errors import StepwiseError

        outcome: Any = None
        if self.is_main:
            try:
                outcome = ("ok", fn())
            except StepwiseError as err:
                outcome = ("error", err.message)
                self.broadcast(outcome)
                raise
        kind, value = self.broadcast(outcome)
        if kind == "error":
            raise StepwiseError(f"rank 0 stopped: {value}")
        return value

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()


def from_environment() -> Dist:
    """The process's place in a torchrun launch; a world of one without torchrun.

    WORLD_SIZE above 1 without the rest of torchrun's variables (RANK, MASTER_ADDR, MASTER_PORT), or any of
    them not a number in range, is one line naming the variable, not torch.distributed's error later."""
    world = _env_int("WORLD_SIZE", "1", low=1)
    if world <= 1:
        return Dist()
    missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name, "").strip()]
    if missing:
        from stepwise.errors import StepwiseError

        raise StepwiseError(f"WORLD_SIZE={world} is set, but not by torchrun ({', '.join(missing)} missing)",
                            fix=f"start the command with `torchrun --nproc-per-node {world} -m stepwise ...`, "
                            "or unset WORLD_SIZE to run as one process")
    rank = _env_int("RANK", "0", low=0, high=world - 1)
    return Dist(rank=rank, world=world, local_world=_env_int("LOCAL_WORLD_SIZE", str(world), low=1, high=world))


def _env_int(name: str, default: str, *, low: int, high: int | None = None) -> int:
    raw = os.environ.get(name, default).strip() or default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        from stepwise.errors import StepwiseError

        span = f"from {low} to {high}" if high is not None else f"{low} or more"
        raise StepwiseError(f"the environment variable {name}={raw!r} is not a whole number {span}",
                            fix=f"unset {name} (torchrun sets it), or set it to a number {span}")
    return value


def default_threads(dist: Dist) -> int:
    """Each of the processes on a machine gets its share of the cores (torchrun's OMP_NUM_THREADS=1 is too few)."""
    return max(1, (os.cpu_count() or 1) // dist.local_world)


@contextlib.contextmanager
def process_group(timeout_s: float = 1800) -> Iterator[Dist]:
    """Join torchrun's process group for the duration of a run (gloo: the CPU backend), then leave it.

    A group that already exists (a caller set it up) is used and left alone.
    """
    dist_info = from_environment()
    if not dist_info.active:
        yield dist_info
        return
    import torch.distributed as dist

    created = not dist.is_initialized()
    if created:
        dist.init_process_group("gloo", timeout=timedelta(seconds=timeout_s))
    try:
        yield Dist(rank=dist.get_rank(), world=dist.get_world_size(), local_world=dist_info.local_world)
    finally:
        if created:
            dist.destroy_process_group()
