"""Seeded, stratified 7:2:1 split for when the user gives only a training file."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable

from stepwise.example import Example


def stratified_split(examples: list[Example], seed: int, ratios: tuple[float, float, float] = (0.7, 0.2, 0.1),
                     stratum: Callable[[object], str] | None = None,
                     ) -> tuple[list[Example], list[Example], list[Example]]:
    """Split each class by the ratios so every split keeps the class balance; order is seeded.

    Tagging examples have list labels; they are stratified by their most frequent non-O tag.
    """
    groups: dict[str, list[Example]] = defaultdict(list)
    for ex in examples:
        groups[(stratum or label_stratum)(ex.label)].append(ex)
    rng = random.Random(seed)
    parts: tuple[list[Example], list[Example], list[Example]] = ([], [], [])
    for key in sorted(groups):
        items = groups[key][:]
        rng.shuffle(items)
        n = len(items)
        n_dev = round(n * ratios[1])
        n_test = round(n * ratios[2])
        n_train = max(n - n_dev - n_test, 1 if n else 0)
        n_dev = min(n_dev, n - n_train)
        parts[0].extend(items[:n_train])
        parts[1].extend(items[n_train:n_train + n_dev])
        parts[2].extend(items[n_train + n_dev:])
    for part in parts:
        rng.shuffle(part)
    return parts


def label_stratum(label: object) -> str:
    if isinstance(label, list):
        types = [t.split("-", 1)[-1] for t in label if t != "O"]
        return max(sorted(set(types)), key=types.count) if types else "O"
    return str(label)
