"""Which examples form each micro-batch, epoch by epoch: deterministic, resumable and shardable."""

from __future__ import annotations

from stepwise.data.batching import length_grouped_batches, shuffled_batches


class BatchSource:
    """Micro-batches of example indices for an epoch, the same for a given (seed, epoch) in every process.

    Under several processes each global batch of `batch_size` examples is cut into `world` contiguous
    shards and process `rank` takes its shard, so the global batch (and the result) does not depend on
    how many processes train.
    """

    def __init__(self, lengths: list[int], batch_size: int, *, seed: int, group_by_length: bool = True,
                 pool: int = 50, rank: int = 0, world: int = 1) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside a world of {world}")
        self.lengths, self.batch_size, self.seed = lengths, batch_size, seed
        self.group_by_length, self.pool, self.rank, self.world = group_by_length, pool, rank, world

    def __len__(self) -> int:
        """Micro-batches per epoch."""
        return -(-len(self.lengths) // self.batch_size)

    def epoch(self, epoch: int) -> list[list[int]]:
        if self.group_by_length:
            batches = length_grouped_batches(self.lengths, self.batch_size, self.seed, epoch, self.pool)
        else:
            batches = shuffled_batches(len(self.lengths), self.batch_size, self.seed, epoch)
        if self.world == 1:
            return batches
        return [self._shard(batch) for batch in batches]

    def _shard(self, batch: list[int]) -> list[int]:
        """This rank's contiguous part; a batch smaller than the world lends its examples round-robin (no rank
        is left without data: DDP needs every rank in every gradient exchange)."""
        if len(batch) < self.world:
            return [batch[self.rank % len(batch)]]
        return batch[self.rank * len(batch) // self.world:(self.rank + 1) * len(batch) // self.world]
