"""Train only the word-embedding rows the training data uses — with the same result as updating all of them.

A fine-tuning set uses a third to a half of the encoder's 30k word pieces (SST-2 11.6k, CoNLL-2003 14.1k).
The other rows never get a gradient, so AdamW's update of them is its decoupled weight decay alone
(p ← p·(1 − lr·wd): with zero gradients both moments stay zero). Yet a dense step streams the whole matrix
three times (zeroed gradient, embedding backward, AdamW): 7–9% of a CPU step (bench/NOTES.md).

`UsedRows` swaps the encoder's word embedding for a table of the used rows only, while training, and keeps
the unused rows' weight decay as one running factor. `plain()` folds both back into the full matrix (for
evaluation, saving, checkpoints); `remove()` ends it. Dense AdamW and this give the same weights up to
float rounding (tests/test_used_rows.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
from torch import nn
from torch.nn import functional as F


class UsedRowsEmbedding(nn.Module):
    """The used rows as a trainable table; any other id reads the (frozen) full matrix, decay applied."""

    def __init__(self, full: nn.Embedding, used: torch.Tensor) -> None:
        super().__init__()
        self.full = full  # its weight no longer trains; the rows below do
        local = torch.full((full.num_embeddings,), -1, dtype=torch.long)
        local[used] = torch.arange(len(used))
        self.register_buffer("used", used, persistent=False)
        self.register_buffer("local", local, persistent=False)
        self.rows = nn.Parameter(full.weight.detach()[used].clone())
        pad = full.padding_idx
        self.padding_idx = int(local[pad]) if pad is not None and int(local[pad]) >= 0 else None
        self.pending = 1.0  # weight decay owed by the rows outside `used` since the last fold

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        local = self.local[ids]
        known = local >= 0
        out = F.embedding(local.clamp(min=0), self.rows, self.padding_idx)
        if bool(known.all()):
            return out
        other = F.embedding(ids, self.full.weight) * self.pending  # no gradient: not a training row
        return torch.where(known.unsqueeze(-1), out, other.to(out.dtype))

    @torch.no_grad()
    def fold(self) -> None:
        """Write the trained rows and the owed decay into the full matrix."""
        weight = self.full.weight
        if self.pending != 1.0:
            weight.mul_(self.pending)
            self.pending = 1.0
        weight[self.used] = self.rows.to(weight.dtype)

    @torch.no_grad()
    def gather(self) -> None:
        """Take the rows from the full matrix again (after it was loaded or changed)."""
        self.rows.copy_(self.full.weight[self.used])
        self.pending = 1.0


class UsedRows:
    """Installs `UsedRowsEmbedding` in `model`'s encoder for the token ids in `sequences`."""

    def __init__(self, model: nn.Module, sequences: Iterable[Iterable[int]], pad_id: int | None) -> None:
        self.encoder = model.encoder
        self.original: nn.Embedding = self.encoder.get_input_embeddings()
        ids = {int(i) for seq in sequences for i in seq}
        if pad_id is not None:
            ids.add(int(pad_id))
        self.original.weight.requires_grad_(False)
        self.module = UsedRowsEmbedding(self.original, torch.tensor(sorted(ids), dtype=torch.long))
        self.encoder.set_input_embeddings(self.module)

    def track(self, optimizer: torch.optim.Optimizer) -> None:
        """After each AdamW step, owe the unused rows that step's decoupled weight decay."""
        group = next(g for g in optimizer.param_groups if any(p is self.module.rows for p in g["params"]))

        def owe(_optimizer: torch.optim.Optimizer, _args: object, _kwargs: object) -> None:
            self.module.pending *= 1.0 - group["lr"] * group["weight_decay"]

        optimizer.register_step_post_hook(owe)

    @contextlib.contextmanager
    def plain(self) -> Iterator[None]:
        """The model with its ordinary embedding, up to date, for the duration of the block."""
        self.module.fold()
        self.encoder.set_input_embeddings(self.original)
        try:
            yield
        finally:
            self.encoder.set_input_embeddings(self.module)
            self.module.gather()

    def remove(self) -> None:
        """Training is over: the ordinary embedding back, up to date and trainable."""
        self.module.fold()
        self.encoder.set_input_embeddings(self.original)
        self.original.weight.requires_grad_(True)
