"""Query/passage pairs and passage pools, read and validated like every other input.

Pairs: JSONL with `query`/`passage` or `question`/`answer` (optionally `id`, the passage's id, and
`category`), or TSV `query<TAB>passage` (an optional header naming those two columns). A pool: JSONL with
`id` and `passage`/`answer`/`text` (optionally `category`), TSV `id<TAB>text`, or a text file of one passage
per line (ids are then the line numbers). A passage without an id gets one from its text, so the same
answer written twice is one passage.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from stepwise.data.text import json_lines, read_text, strip_invisible
from stepwise.errors import StepwiseError

QUERY_KEYS, PASSAGE_KEYS = ("query", "question"), ("passage", "answer", "text")


@dataclass(frozen=True)
class Passage:
    id: str
    text: str
    category: str | None = None


@dataclass(frozen=True)
class Pair:
    query: str
    passage: Passage
    line: int


def text_id(text: str) -> str:
    """The id of a passage given without one: a digest of its text."""
    return "p" + hashlib.sha1(text.encode()).hexdigest()[:12]


def _field(record: dict, keys: tuple[str, ...]) -> tuple[str | None, object]:
    for key in keys:
        if key in record:
            return key, record[key]
    return None, None


def _text(value: object, what: str, path: str | Path, line: int) -> str:
    if not isinstance(value, str):
        raise StepwiseError(f"the {what} must be a string, got {type(value).__name__}", path=path, line=line,
                            fix=f"write the {what} as a JSON string")
    text = strip_invisible(value)
    if not text:
        raise StepwiseError(f"the {what} is empty", path=path, line=line, fix=f"give every line a {what}, or drop it")
    return text


def _optional_id(record: dict, path: str | Path, line: int) -> str | None:
    value = record.get("id")
    if value is None:
        return None
    if not isinstance(value, (str, int)) or isinstance(value, bool) or not str(value).strip():
        raise StepwiseError("the id must be a non-empty string or a whole number", path=path, line=line,
                            fix='e.g. "id": "faq-012"')
    return str(value).strip()


def _category(record: dict) -> str | None:
    value = record.get("category")
    return str(value) if value is not None and str(value).strip() else None


def read_pairs(path: str | Path) -> list[Pair]:
    """Every (query, relevant passage) pair of a file; one error line for the first thing wrong."""
    text = read_text(path)
    pairs: list[Pair] = []
    if Path(path).suffix.lower() in (".jsonl", ".json"):
        for line, record in json_lines(text, path):
            if not isinstance(record, dict):
                raise StepwiseError("each line must be a JSON object", path=path, line=line,
                                    fix='e.g. {"query": "...", "passage": "..."}')
            qkey, query = _field(record, QUERY_KEYS)
            pkey, passage = _field(record, PASSAGE_KEYS)
            if qkey is None or pkey is None:
                missing = "a query (\"query\" or \"question\")" if qkey is None else \
                    "a passage (\"passage\" or \"answer\")"
                raise StepwiseError(f"no {missing} on this line", path=path, line=line,
                                    fix='each line needs {"query": ..., "passage": ...} or {"question": ..., '
                                        '"answer": ...}')
            body = _text(passage, pkey, path, line)
            pid = _optional_id(record, path, line) or text_id(body)
            pairs.append(Pair(_text(query, qkey, path, line), Passage(pid, body, _category(record)), line))
    else:
        for line, row in enumerate(text.split("\n"), 1):
            if not row.strip():
                continue
            cells = row.rstrip("\r").split("\t")
            if line == 1 and [c.strip().lower() for c in cells[:2]] in (["query", "passage"],
                                                                         ["question", "answer"]):
                continue
            if len(cells) < 2:
                raise StepwiseError("no passage on this line (expected query<TAB>passage)", path=path, line=line,
                                    fix="separate the query and its passage with a tab")
            body = _text(cells[1], "passage", path, line)
            pairs.append(Pair(_text(cells[0], "query", path, line), Passage(text_id(body), body), line))
    if not pairs:
        raise StepwiseError("no query/passage pairs", path=path, fix="give at least one pair")
    return pairs


def read_pool(path: str | Path) -> list[Passage]:
    """The passages to retrieve from; duplicate ids are an error (which text would an id mean?)."""
    text = read_text(path)
    passages: list[Passage] = []
    seen: dict[str, int] = {}
    suffix = Path(path).suffix.lower()
    for line, row in enumerate(text.split("\n"), 1):
        if not row.strip():
            continue
        if suffix in (".jsonl", ".json"):
            record = next(json_lines(row, path))[1]
            if not isinstance(record, dict):
                raise StepwiseError("each line must be a JSON object", path=path, line=line,
                                    fix='e.g. {"id": "faq-1", "passage": "..."}')
            key, body = _field(record, PASSAGE_KEYS)
            if key is None:
                raise StepwiseError("no passage text on this line", path=path, line=line,
                                    fix='give "passage", "answer" or "text"')
            body = _text(body, key, path, line)
            pid = _optional_id(record, path, line) or text_id(body)
            passage = Passage(pid, body, _category(record))
        elif suffix == ".tsv":
            cells = row.rstrip("\r").split("\t")
            if len(cells) < 2:
                raise StepwiseError("expected id<TAB>text", path=path, line=line, fix="give each passage an id")
            if line == 1 and cells[0].strip().lower() == "id":
                continue
            passage = Passage(_text(cells[0], "id", path, line), _text(cells[1], "text", path, line))
        else:
            passage = Passage(str(line), _text(row, "passage", path, line))
        if passage.id in seen:
            raise StepwiseError(f"duplicate passage id {passage.id!r} (first on line {seen[passage.id]})",
                                path=path, line=line, fix="give every passage its own id")
        seen[passage.id] = line
        passages.append(passage)
    if not passages:
        raise StepwiseError("the pool is empty", path=path, fix="give at least one passage")
    return passages


def pool_of(splits: Iterable[list[Pair]]) -> list[Passage]:
    """Every distinct passage of the given pairs (the default pool), in first-seen order."""
    pool: dict[str, Passage] = {}
    for pairs in splits:
        for pair in pairs:
            pool.setdefault(pair.passage.id, pair.passage)
    return list(pool.values())


def check_in_pool(pairs: list[Pair], pool: list[Passage], path: str | Path, pool_path: str | Path) -> None:
    """Each pair's passage must be in the pool, with the same text (else its rank means nothing)."""
    by_id = {p.id: p for p in pool}
    by_text = {p.text: p for p in pool}
    for pair in pairs:
        known = by_id.get(pair.passage.id) or by_text.get(pair.passage.text)
        if known is None:
            raise StepwiseError(f"the passage of this pair ({pair.passage.id}) is not in the pool {pool_path}",
                                path=path, line=pair.line, fix="add it to the pool, or drop --pool to use the "
                                "passages of the pairs")


def resolve(pairs: list[Pair], pool: list[Passage]) -> list[int]:
    """Each pair's passage as an index into the pool (by id, else by text)."""
    by_id = {p.id: i for i, p in enumerate(pool)}
    by_text = {p.text: i for i, p in enumerate(pool)}
    return [by_id.get(p.passage.id, by_text.get(p.passage.text, -1)) for p in pairs]


def read_queries(path: str | Path) -> list[str]:
    """One query per line (`answer --input`, "-" for stdin). A blank line stays, as in `predict`: every line
    gets one output record, so outputs line up with inputs."""
    text = read_text(path)
    return [strip_invisible(row) for row in text.rstrip("\n").split("\n")]
