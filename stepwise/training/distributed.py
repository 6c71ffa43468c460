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
    """The process's place in a torchrun launch; a world of one without torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    return Dist(rank=int(os.environ.get("RANK", "0")), world=world,
                local_world=int(os.environ.get("LOCAL_WORLD_SIZE", str(world))))


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
