"""The two towers on the shared encoder: the user tower reads a history as text, the item tower an item's text.

Both towers are the retrieval bi-encoder (one encoder, mean-pooled, unit length): a user is the text of
their most recent items, newest first, cut at the token budget (so the oldest fall off); an item is its
own text. The hybrid option adds a learned item-id vector to the item tower for the items training saw
(then back to unit length: the id turns an item's vector, it does not lengthen it, or every trained item
would outscore every cold one); a cold item (never in training) has none and is scored by its text alone.

The id table trains on the shared loop's one learning rate, which suits the encoder and is far too small
for a table that starts at zero: its rows are stored divided by ID_GAIN and multiplied back in the
forward pass, which for Adam is the same as a learning rate ID_GAIN times larger for those rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from stepwise.tasks.retrieve.model import BiEncoder

#: separates the items of a history in the user tower's text
SEPARATOR = " ; "
#: the id rows' learning-rate multiplier (see the module docstring)
ID_GAIN = 100.0
#: the item tower's token budget: an item text is a title, year and genres, a short description
ITEM_TOKENS = 64


def history_text(texts_newest_first: Sequence[str]) -> str:
    """The user tower's input; the tokenizer's truncation then drops the oldest items first."""
    return SEPARATOR.join(texts_newest_first)


def recent(history: Sequence[str], n: int) -> list[str]:
    """The last `n` items of a time-ordered history, newest first."""
    return list(reversed(history[-n:])) if n > 0 else []


class TwoTower(nn.Module):
    """`users(ids, mask)` and `items(ids, mask, rows)` → vectors whose dot product is the score."""

    def __init__(self, bi: BiEncoder, id_rows: int = 0) -> None:
        super().__init__()
        self.bi = bi
        self.encoder = bi.encoder  # the shared loop's embedding handling looks here
        self.extra_inputs: dict[str, int] = {}
        dim = bi.encoder.config.hidden_size
        # row 0: "no id" (a cold item); rows 1..id_rows: the items training saw
        self.ids = nn.Embedding(id_rows + 1, dim, padding_idx=0) if id_rows else None
        if self.ids is not None:
            nn.init.zeros_(self.ids.weight)

    @property
    def input_names(self) -> tuple[str, ...]:
        return ("input_ids", "attention_mask")

    @property
    def scale(self) -> torch.Tensor:
        return self.bi.scale

    def users(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.bi(input_ids, attention_mask)

    def items(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
              rows: torch.Tensor | None = None) -> torch.Tensor:
        text = self.bi(input_ids, attention_mask)
        if self.ids is None or rows is None:
            return text
        return F.normalize(text + ID_GAIN * self.ids(rows).float(), dim=-1)

    def id_vectors(self) -> torch.Tensor | None:
        """The learned id part of every item row (row 0 is zero), as added in `items`."""
        return None if self.ids is None else ID_GAIN * self.ids.weight.detach().float()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: Any) -> torch.Tensor:
        return self.bi(input_ids, attention_mask)
