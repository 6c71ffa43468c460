"""Process state a run may touch (seeds, thread count), set for the run and put back after it.

A server or a search loop calls `train()`/`load()` many times in one process; each call must leave
the process as it found it, and the same seed must give the same run whatever ran before.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch

from stepwise.training.checkpoint import rng_state, set_rng_state


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed every generator for the run; the generators and the thread count (a run may change it while
    it follows the machine's load: stepwise.threads) are put back after it."""
    saved, saved_threads = rng_state(), torch.get_num_threads()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        set_rng_state(saved)
        torch.set_num_threads(saved_threads)
