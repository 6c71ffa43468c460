"""Interaction logs and item texts, read and validated like every other input, and the leave-last-out split.

Interactions: TSV/CSV/JSONL with a header naming `user` (or user_id/userId), `item` (or item_id/itemId/
movieId), `timestamp` (or time; seconds, or an ISO 8601 date) and optionally `rating`. Feedback is implicit:
every row is an interaction, unless `min_rating` drops the lower ones. What MovieLens-style logs hold and
users expect to be dropped is skipped and counted (a user rating the same item twice: the first time is
kept; a user with a single interaction, who has nothing to predict from); what means the files disagree
(an item id the item file does not have) is an error naming the line.

Items: TSV/CSV/JSONL with an id column and text fields; the item's text is every non-id field in order,
`title` and `year` written as "Title (1995)", `|`-separated lists as commas.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from stepwise.data.readers import _read_rows, detect_format
from stepwise.data.text import json_lines, read_text, strip_invisible
from stepwise.errors import StepwiseError

USER_KEYS = ("user", "userid")
ITEM_KEYS = ("item", "itemid", "movieid")
TIME_KEYS = ("timestamp", "time")
RATING_KEYS = ("rating",)
ID_KEYS = ("item", "itemid", "movieid", "id")
SPLITS = ("dev", "test")


@dataclass(frozen=True)
class Interaction:
    user: str
    item: str
    timestamp: float
    rating: float | None
    line: int = field(default=0, compare=False)  # where it was read (0: built in code), for error messages


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "").replace("-", "")


def _find(header: list[str], keys: tuple[str, ...]) -> str | None:
    for name in header:
        if _key(name) in keys:
            return name
    return None


def _table(path: str | Path, text: str, fmt: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the rows (with their line numbers) of a TSV/CSV file, through the shared reader."""
    if fmt == "csv":
        first = next((row for row in csv.reader(io.StringIO(text)) if any(c.strip() for c in row)), [])
    else:
        first = next(ln.rstrip("\r").split("\t") for ln in text.split("\n") if strip_invisible(ln))
    header = [h.strip() for h in first]
    if len(header) < 2 or len(set(header)) != len(header) or not all(h and not h.isdigit() for h in header):
        raise StepwiseError("the first line must be a header of distinct column names", path=path, line=1,
                            fix="e.g. user_id<TAB>item_id<TAB>timestamp")
    rows, _, _, _ = _read_rows(path, text, fmt, header[0], header[1])
    return header, rows


def _records(path: str | Path) -> tuple[list[str] | None, list[tuple[int, dict[str, object]]]]:
    """(header, [(line, {column: value})]) for a TSV/CSV/JSONL file; JSONL has no header (None)."""
    if str(path) != "-" and Path(path).is_dir():
        raise StepwiseError("is a directory, not a file", path=path, fix="give the path of a data file inside it")
    fmt = detect_format(path)
    if fmt not in ("tsv", "csv", "jsonl"):
        raise StepwiseError(f"a {fmt} file cannot hold interactions or items", path=path,
                            fix="use .tsv, .csv or .jsonl")
    text = read_text(path)
    if fmt == "jsonl":
        records = []
        for line, obj in json_lines(text, path):
            if not isinstance(obj, dict):
                raise StepwiseError("the line is not a JSON object", path=path, line=line,
                                    fix='e.g. {"user": "u1", "item": "i7", "timestamp": 881250949}')
            records.append((line, obj))
        return None, records
    header, rows = _table(path, text, fmt)
    return header, [(line, dict(zip(header, fields))) for line, fields in rows]


def _column(header: list[str] | None, record: dict, keys: tuple[str, ...]) -> str | None:
    return _find(header if header is not None else list(record), keys)


def _cell(value: object) -> str:
    if value is None or isinstance(value, (dict, list, bool)):
        return ""
    return strip_invisible(str(value))


def _number(value: object, what: str, path: str | Path, line: int, fix: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        try:
            number = float(_cell(value))
        except ValueError:
            number = math.nan
            if what == "timestamp":
                try:
                    moment = datetime.fromisoformat(_cell(value))
                    if moment.tzinfo is None:
                        moment = moment.replace(tzinfo=timezone.utc)
                    number = moment.timestamp()
                except ValueError:
                    pass
    if not math.isfinite(number):
        raise StepwiseError(f"the {what} {_cell(value)!r} is not a number", path=path, line=line, fix=fix)
    return number


def read_interactions(path: str | Path, *, min_rating: float | None = None,
                      items: dict[str, str] | None = None) -> tuple[list[Interaction], dict[str, int]]:
    """The interactions of a log in file order, and what was skipped and counted.

    Skips: `duplicate` (the user already has this item: the earliest row is kept, ties by file order) and
    `below_min_rating`. With `items`, an item id not in it is an error naming the line.
    """
    header, records = _records(path)
    if not records:
        raise StepwiseError("the file has a header but no interactions", path=path, fix="add rows below the header")
    skipped = {"duplicate": 0, "below_min_rating": 0}
    kept: dict[tuple[str, str], Interaction] = {}
    columns: dict[tuple[str, ...], list[str | None]] = {}  # the column names, found once per set of keys
    for line, record in records:
        keys = tuple(header if header is not None else record)
        names = columns.get(keys)
        if names is None:
            names = columns[keys] = [_find(list(keys), k) for k in (USER_KEYS, ITEM_KEYS, TIME_KEYS, RATING_KEYS)]
        for name, role, example in zip(names, ("user", "item", "timestamp"), ("user_id", "item_id", "timestamp")):
            if name is None:
                found = ", ".join(map(str, keys))
                raise StepwiseError(f"no {role} column (found: {found})", path=path,
                                    line=1 if header is not None else line,
                                    fix=f"name the columns user, item, timestamp[, rating] (or {example})")
        user, item = _cell(record[names[0]]), _cell(record[names[1]])
        for value, role in ((user, "user"), (item, "item")):
            if not value:
                raise StepwiseError(f"empty {role} id", path=path, line=line, fix=f"give every row a {role} id")
        if items is not None and item not in items:
            raise StepwiseError(f"item {item!r} is not in the item file", path=path, line=line,
                                fix="add it to the items, or remove its interactions")
        stamp = _number(record[names[2]], "timestamp", path, line,
                        "give seconds since 1970 (e.g. 881250949) or an ISO date (2024-05-01T12:00:00)")
        rating_name = names[3]
        rating = None
        if rating_name is not None and _cell(record[rating_name]):
            rating = _number(record[rating_name], "rating", path, line, "give a number, or leave it empty")
        if min_rating is not None:
            if rating is None:
                raise StepwiseError("min_rating needs a rating on every row, and this one has none", path=path,
                                    line=line, fix="fill in the rating column, or drop --min-rating")
            if rating < min_rating:
                skipped["below_min_rating"] += 1
                continue
        row = Interaction(user, item, stamp, rating, line)
        earlier = kept.get((user, item))
        if earlier is not None:
            skipped["duplicate"] += 1
            if stamp >= earlier.timestamp:
                continue
        kept[(user, item)] = row
    if not kept:
        raise StepwiseError(f"every interaction is below the minimum rating {min_rating:g}", path=path,
                            fix="lower --min-rating")
    return sorted(kept.values(), key=lambda r: r.line), skipped


def _item_text(record: dict, names: list[str]) -> str:
    parts: list[str] = []
    for name in names:
        value = record.get(name)
        text = ", ".join(_cell(v) for v in value if _cell(v)) if isinstance(value, list) else _cell(value)
        if not text:
            continue
        if _key(name) == "year" and parts:
            parts[-1] += f" ({text})"
        else:
            parts.append(", ".join(p.strip() for p in text.split("|") if p.strip()) if "|" in text else text)
    return ". ".join(parts)


def read_items(path: str | Path) -> dict[str, str]:
    """Item id -> its one text (every non-id field, in column order); duplicate ids and empty texts are errors."""
    header, records = _records(path)
    items: dict[str, str] = {}
    first: dict[str, int] = {}
    for line, record in records:
        id_name = _column(header, record, ID_KEYS)
        if id_name is None:
            found = ", ".join(header if header is not None else map(str, record))
            raise StepwiseError(f"no item id column (found: {found})", path=path,
                                line=1 if header is not None else line,
                                fix="name the id column item_id (or item, id) and the others by their field")
        item = _cell(record[id_name])
        if not item:
            raise StepwiseError("empty item id", path=path, line=line, fix="give every item an id")
        if item in first:
            raise StepwiseError(f"duplicate item id {item!r} (first on line {first[item]})", path=path, line=line,
                                fix="give every item its own id")
        text = _item_text(record, [n for n in (header or list(record)) if n != id_name])
        if not text:
            raise StepwiseError(f"item {item!r} has no text", path=path, line=line,
                                fix="give it a title or a description")
        first[item] = line
        items[item] = text
    if not items:
        raise StepwiseError("the file has a header but no items", path=path, fix="add rows below the header")
    return items


@dataclass
class Split:
    """Leave-last-out: each user's last interaction is test, the one before dev, the rest train.

    Cold items are in no history and no training list (nobody has interacted with them yet as far as a
    model can tell) but stay dev/test targets; `seen` still holds them, as a user is never recommended what
    they already had. `skipped` counts what was left out (users with one interaction, duplicate rows).
    """

    items: list[str]
    train: dict[str, list[str]]
    dev: dict[str, str]
    test: dict[str, str]
    cold_items: frozenset[str]
    skipped: dict[str, int] = field(default_factory=dict)
    earlier: dict[str, dict[str, list[str]]] = field(default_factory=dict, repr=False)

    def history(self, user: str, split: str) -> list[str]:
        """The items before that split's target, time order, cold items left out (a model's input)."""
        _check_split(split)
        if user not in self.earlier[split]:
            raise KeyError(f"user {user!r} has no {split} target")
        if split == "dev" or user not in self.dev:
            return list(self.train[user])
        dev = self.dev[user]
        return [*self.train[user], *([] if dev in self.cold_items else [dev])]

    def seen(self, user: str, split: str) -> set[str]:
        """What to exclude when ranking for that split: everything the user had before its target."""
        _check_split(split)
        if user not in self.earlier[split]:
            raise KeyError(f"user {user!r} has no {split} target")
        return set(self.earlier[split][user])


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")


def split_leave_last_out(interactions: Iterable[Interaction], items: dict[str, str], *,
                         cold_fraction: float = 0.0, seed: int = 0) -> Split:
    """Order each user's interactions by time (ties: the order given), hold out the last two.

    A user with two interactions has a test target and one training item but no dev target; one with a
    single interaction is skipped and counted. `cold_fraction` of the catalogue (chosen with `seed`) is
    removed from training entirely.
    """
    import numpy as np

    if not 0.0 <= cold_fraction < 1.0:
        raise ValueError(f"cold_fraction must be in [0, 1), not {cold_fraction}")
    catalogue = list(items)
    by_user: dict[str, list[Interaction]] = {}
    pairs: set[tuple[str, str]] = set()
    skipped = {"duplicate": 0, "user_one_interaction": 0}
    for row in interactions:
        if row.item not in items:
            where = f" (line {row.line})" if row.line else ""
            raise StepwiseError(f"user {row.user!r} has item {row.item!r}{where}, which is not in the items",
                                fix="add it to the items, or remove its interactions")
        if (row.user, row.item) in pairs:
            skipped["duplicate"] += 1
            continue
        pairs.add((row.user, row.item))
        by_user.setdefault(row.user, []).append(row)
    rng = np.random.default_rng(seed)
    n_cold = int(round(cold_fraction * len(catalogue)))
    cold = frozenset(catalogue[i] for i in rng.choice(len(catalogue), size=n_cold, replace=False)) \
        if n_cold else frozenset()
    train: dict[str, list[str]] = {}
    dev: dict[str, str] = {}
    test: dict[str, str] = {}
    earlier: dict[str, dict[str, list[str]]] = {"dev": {}, "test": {}}
    for user, rows in by_user.items():
        if len(rows) < 2:
            skipped["user_one_interaction"] += 1
            continue
        sequence = [r.item for r in sorted(rows, key=lambda r: r.timestamp)]  # sorted() is stable
        test[user] = sequence[-1]
        earlier["test"][user] = sequence[:-1]
        if len(sequence) >= 3:
            dev[user] = sequence[-2]
            earlier["dev"][user] = sequence[:-2]
        train[user] = [i for i in sequence[:-2 if len(sequence) >= 3 else -1] if i not in cold]
    if not test:
        raise StepwiseError("no user has two interactions: there is nothing to predict from",
                            fix="give each user at least two interactions (three for a dev target)")
    return Split(catalogue, train, dev, test, cold, skipped, earlier)
