"""Words of a sentence: a tagger's unit. Their shape (the word-shape input), the words of an example, and the
windows a long sentence is cut into so that its sub-tokens fit the model."""

from __future__ import annotations

from stepwise.example import Example

SHAPES = 7  # 0 special/padding, then the word shapes below


def word_shape(word: str) -> int:
    """Casing survives here even when the tokenizer lower-cases: a strong cue for names."""
    if any(c.isdigit() for c in word):
        return 5
    if not any(c.isalpha() for c in word):
        return 6
    if word.islower():
        return 1
    if word.isupper():
        return 3 if len(word) > 1 else 2
    if word[0].isupper() and (len(word) == 1 or word[1:].islower()):
        return 2
    return 4


def words_of(example: Example) -> list[str]:
    return example.text if isinstance(example.text, list) else str(example.text).split()


def windows(piece_counts: list[int], budget: int, overlap: int | None = None) -> list[tuple[int, int]]:
    """Word ranges [start, end) whose sub-tokens fit `budget`; consecutive windows share ~budget/4 tokens."""
    overlap = budget // 4 if overlap is None else overlap
    spans: list[tuple[int, int]] = []
    start, n = 0, len(piece_counts)
    if n == 0:
        return [(0, 0)]
    while True:
        used, end = 0, start
        while end < n and used + piece_counts[end] <= budget:
            used += piece_counts[end]
            end += 1
        spans.append((start, end))
        if end >= n:
            return spans
        back, shared = end, 0
        while back - 1 > start and shared + piece_counts[back - 1] <= overlap:
            back -= 1
            shared += piece_counts[back]
        start = back
