"""GECToR-style edit tags: align a sentence with its correction, tag each source token, apply the tags.

A tag says what to do with one source token: keep it, delete it, replace it with a word, append a word
after it, change its case, fix its spelling, change its suffix (morphology learned from the data: "s>"
drops a plural s, ">ed" adds -ed), split it, or merge it with the next token. Position 0 is a virtual
`$START` token, so words can be appended at the beginning of a sentence.

`edit_ops` gives every token the full list of operations that turn the source into the target, so
applying them reproduces the target exactly. The model learns the first operation of each token: one
pass rarely fixes everything, which is why inference iterates (tag → apply → tag the new sentence).
Alignment is `difflib.SequenceMatcher` over tokens.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache

START = "$START"
KEEP, DELETE = "$KEEP", "$DELETE"
SPELL = "$SPELL"
MERGE_SPACE, MERGE_HYPHEN = "$MERGE_SPACE", "$MERGE_HYPHEN"
SPLIT_HYPHEN = "$SPLIT_HYPHEN"
REPLACE, APPEND, SUFFIX, SPLIT = "$REPLACE_", "$APPEND_", "$SUFFIX_", "$SPLIT_"
CASES: dict[str, Callable[[str], str]] = {
    "$CASE_LOWER": str.lower,
    "$CASE_CAPITAL": lambda w: w[:1].upper() + w[1:].lower(),
    "$CASE_UPPER": str.upper,
}
#: tags every editor has, whatever its training data
BUILT_IN = (KEEP, DELETE, SPELL, MERGE_SPACE, MERGE_HYPHEN, SPLIT_HYPHEN, *CASES)
MAX_SUFFIX = 3  # longest suffix a morphological tag rewrites ("ing", "ies")
MIN_STEM = 3


class Speller:
    """Spelling correction of one word by a well-kept spell checker (pyspellchecker), case kept, cached."""

    def __init__(self) -> None:
        from spellchecker import SpellChecker

        self._checker = SpellChecker(distance=1)

    def known(self, word: str) -> bool:
        return not word.isalpha() or word.lower() in self._checker

    @lru_cache(maxsize=65536)  # noqa: B019 - one speller per process, words repeat
    def correct(self, word: str) -> str | None:
        """The corrected word, None when it is known, not alphabetic or has no candidate."""
        if len(word) < 3 or self.known(word):
            return None
        fixed = self._checker.correction(word.lower())
        if not fixed or fixed == word.lower():
            return None
        return _same_case(word, fixed)


def _same_case(model: str, word: str) -> str:
    if model.isupper() and len(model) > 1:
        return word.upper()
    if model[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def transform(source: str, target: str, speller: Speller | None = None) -> str:
    """The most general tag turning one token into another: case, spelling, suffix, else a replacement."""
    if source == target:
        return KEEP
    if source.lower() == target.lower():
        for tag, change in CASES.items():
            if change(source) == target:
                return tag
    if speller is not None and _typo(source, target) and speller.correct(source) == target:
        return SPELL
    stem = len(_common_prefix(source, target))
    cut, add = source[stem:], target[stem:]
    if stem >= MIN_STEM and len(cut) <= MAX_SUFFIX and len(add) <= MAX_SUFFIX and (cut + add).isalpha():
        return f"{SUFFIX}{cut}>{add}"
    return REPLACE + target


def _typo(source: str, target: str) -> bool:
    """Close enough in spelling to be worth asking the spell checker (which is slow on unrelated words)."""
    if not (source.isalpha() and target.isalpha()) or abs(len(source) - len(target)) > 2:
        return False
    return difflib.SequenceMatcher(None, source.lower(), target.lower(), autojunk=False).ratio() >= 0.6


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def edit_ops(source: Sequence[str], target: Sequence[str], speller: Speller | None = None) -> list[list[str]]:
    """Per position ($START, then each source token) the operations that turn `source` into `target`."""
    ops: list[list[str]] = [[] for _ in range(len(source) + 1)]
    matcher = difflib.SequenceMatcher(None, list(source), list(target), autojunk=False)
    for kind, i1, i2, j1, j2 in matcher.get_opcodes():
        if kind == "equal":
            continue
        if kind == "delete":
            for i in range(i1, i2):
                ops[i + 1].append(DELETE)
        elif kind == "insert":
            ops[i1].extend(APPEND + w for w in target[j1:j2])  # after token i1-1, or after $START
        else:
            _replace_block(ops, source[i1:i2], target[j1:j2], i1, speller)
    return [o or [KEEP] for o in ops]


def _replace_block(ops: list[list[str]], src: Sequence[str], tgt: Sequence[str], i1: int,
                   speller: Speller | None) -> None:
    n, m = len(src), len(tgt)
    if m == 1 and n > 1 and "".join(src) == tgt[0]:
        for i in range(n - 1):
            ops[i1 + i + 1].append(MERGE_SPACE)
        return
    if m == 1 and n > 1 and "-".join(src) == tgt[0]:
        for i in range(n - 1):
            ops[i1 + i + 1].append(MERGE_HYPHEN)
        return
    if n == 1 and m == 2 and "-".join(tgt) == src[0]:
        ops[i1 + 1].append(SPLIT_HYPHEN)
        return
    if n == 1 and m == 2 and "".join(tgt) == src[0]:
        ops[i1 + 1].append(f"{SPLIT}{len(tgt[0])}")
        return
    paired = min(n, m)
    for k in range(paired):
        tag = transform(src[k], tgt[k], speller)
        if tag != KEEP:
            ops[i1 + k + 1].append(tag)
    for k in range(paired, n):
        ops[i1 + k + 1].append(DELETE)
    ops[i1 + paired].extend(APPEND + w for w in tgt[paired:])  # extra target words after the last pair


def apply_tags(tokens: Sequence[str], tags: Sequence[str | Sequence[str]], speller: Speller | None = None,
               ) -> list[str]:
    """The sentence after applying one tag (or a list of operations) per position ($START first).

    A tag that does not fit its token (a suffix the word lacks, a split past its end) leaves the token
    as it is, so a model's mistake never corrupts the text.
    """
    if len(tags) != len(tokens) + 1:
        raise ValueError(f"expected {len(tokens) + 1} tags ($START + one per token), got {len(tags)}")
    out: list[str] = []
    pending: str | None = None  # a merge: the next position's first word joins the last word written
    for position, ops in enumerate(tags):
        ops = [ops] if isinstance(ops, str) else list(ops)
        words = [] if position == 0 else [tokens[position - 1]]
        joiner = None
        for op in ops:
            if op in (MERGE_SPACE, MERGE_HYPHEN):
                joiner = "" if op == MERGE_SPACE else "-"
            else:
                words = _apply_one(op, words, speller)
        emitted = bool(words)
        if pending is not None and out and words:
            out[-1] += pending + words[0]
            words = words[1:]
        out.extend(words)
        pending = joiner if emitted else None
    return out


def _apply_one(op: str, words: list[str], speller: Speller | None) -> list[str]:
    if op == KEEP or op == START:
        return words
    if op == DELETE:
        return []
    if op.startswith(APPEND):
        return [*words, op[len(APPEND):]]
    if not words:
        return [op[len(REPLACE):]] if op.startswith(REPLACE) else words
    head, rest = words[0], words[1:]
    if op.startswith(REPLACE):
        return [op[len(REPLACE):], *rest]
    if op in CASES:
        return [CASES[op](head), *rest]
    if op == SPELL:
        fixed = speller.correct(head) if speller is not None else None
        return [fixed or head, *rest]
    if op.startswith(SUFFIX):
        cut, _, add = op[len(SUFFIX):].partition(">")
        if head.endswith(cut) and len(head) - len(cut) >= 1:
            return [head[:len(head) - len(cut)] + add, *rest]
        return words
    if op == SPLIT_HYPHEN:
        parts = [p for p in head.split("-") if p]
        return [*parts, *rest] if len(parts) > 1 else words
    if op.startswith(SPLIT):
        at = int(op[len(SPLIT):]) if op[len(SPLIT):].isdigit() else 0
        return [head[:at], head[at:], *rest] if 0 < at < len(head) else words
    return words  # an unknown tag is a no-op, never an error at inference


def first_tags(ops: Sequence[Sequence[str]]) -> list[str]:
    """The tag each position is trained on: its first operation."""
    return [o[0] for o in ops]


def tag_vocabulary(op_lists: Iterable[Sequence[Sequence[str]]], *, min_count: int = 2,
                   max_tags: int = 5000) -> tuple[list[str], dict[str, float]]:
    """The tags a model predicts (built-ins, then frequent data tags) and how much of the data they cover.

    Coverage is over the training positions' first operations that are edits (not $KEEP): the share
    the vocabulary can express. Tags outside it are left out of the loss, not taught as $KEEP.
    """
    counts: Counter[str] = Counter()
    for ops in op_lists:
        counts.update(first_tags(ops))
    edits = sum(c for t, c in counts.items() if t != KEEP)
    frequent = [t for t, c in counts.most_common() if c >= min_count and t not in BUILT_IN]
    vocab = list(BUILT_IN) + frequent[: max(max_tags - len(BUILT_IN), 0)]
    known = set(vocab)
    covered = sum(c for t, c in counts.items() if t != KEEP and t in known)
    return vocab, {"edits": edits, "covered": covered, "coverage": covered / edits if edits else 1.0,
                   "distinct_edit_tags": len(counts) - (KEEP in counts), "tags": len(vocab)}
