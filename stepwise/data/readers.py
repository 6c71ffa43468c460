"""Readers for TSV, CSV and JSONL files of (text, label) rows; every problem is a StepwiseError."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from stepwise.data.text import json_lines, read_text, strip_invisible
from stepwise.errors import StepwiseError
from stepwise.example import Example, Examples

TABLE_FORMATS = {".tsv": "tsv", ".txt": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl",
                 ".conll": "conll", ".bio": "conll", ".iob": "conll", ".iobes": "conll"}


def detect_format(path: str | Path, fmt: str | None = None, prefer: str | None = None) -> str:
    """The explicit format, else by extension; `prefer` decides for .txt and unknown extensions."""
    if fmt:
        return fmt
    suffix = Path(path).suffix.lower()
    if prefer and (suffix == ".txt" or suffix not in TABLE_FORMATS):
        return prefer
    if suffix not in TABLE_FORMATS:
        raise StepwiseError(f"cannot tell the format from the extension {suffix!r}", path=path,
                            fix="use .tsv, .csv, .jsonl or .conll, or pass --format")
    return TABLE_FORMATS[suffix]


def _is_tokens(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v for v in value)


def _column_index(header: list[str] | None, column: str | int, path: str | Path, role: str) -> int:
    if isinstance(column, int) or str(column).isdigit():
        return int(column)
    if header is None or column not in header:
        found = ", ".join(header) if header else "no header"
        raise StepwiseError(f"no {role} column named {column!r} (found: {found})", path=path, line=1,
                            fix=f"pass --{role}-column with one of the header names or a 0-based index")
    return header.index(column)


def _read_rows(path: str | Path, text: str, fmt: str, text_column: str | int | None,
               label_column: str | int | None, pair_column: str | int | None = None,
               ) -> tuple[list[tuple[int, list[str]]], int, int | None, int | None]:
    """Rows of a delimited file with their line numbers, and the text/label column indices."""
    if fmt == "csv":
        rows = []
        reader = csv.reader(io.StringIO(text))
        start = 1
        try:
            for fields in reader:  # a row is reported at the line it starts on (a quoted field may span lines)
                rows.append((start, fields))
                start = reader.line_num + 1
        except csv.Error as err:
            raise StepwiseError(f"malformed CSV ({err})", path=path, line=reader.line_num,
                                fix="check the quoting") from None
    else:
        rows = [(i, ln.rstrip("\r").split("\t")) for i, ln in enumerate(text.split("\n"), 1)]
    rows = [(i, f) for i, f in rows if any(strip_invisible(x) for x in f)]
    first_line, first = rows[0]
    names = [str(c) for c in (text_column, label_column, pair_column) if c is not None and not str(c).isdigit()]
    header: list[str] | None = None
    if fmt == "csv" or names or ("text" in first and "label" in first):
        header = [h.strip() for h in first]
        rows = rows[1:]
        t_idx = _column_index(header, text_column if text_column is not None else "text", path, "text")
        l_idx = label_column if label_column is not None else ("label" if "label" in header else None)
        l_idx = None if l_idx is None else _column_index(header, l_idx, path, "label")
        p_idx = None if pair_column is None else _column_index(header, pair_column, path, "pair")
        width = len(header)
    else:
        t_idx = int(text_column) if text_column is not None else 0
        l_idx = int(label_column) if label_column is not None else 1
        p_idx = None if pair_column is None else int(pair_column)
        width = len(first)
        if width == 1 and label_column is None:
            l_idx, width = None, 1
        elif width < 2:
            raise StepwiseError(f"expected 2 tab-separated columns (text, label), found {width}", path=path,
                                line=first_line, fix="separate text and label with a tab")
    for role, index in (("text", t_idx), ("label", l_idx), ("pair", p_idx)):
        if index is not None and index >= width:
            names_too = " or a header name" if header is not None else ""
            raise StepwiseError(f"--{role}-column {index} is out of range: the file has {width} columns",
                                path=path, line=first_line, fix=f"pass an index from 0 to {width - 1}{names_too}")
    for line, fields in rows:
        if len(fields) != width:
            if fmt == "csv" and any("\n" in f for f in fields):
                raise StepwiseError("a quote opened on this line is never closed: it takes in the lines after it",
                                    path=path, line=line, fix="close the quote (a quote inside a quoted field is "
                                    "written twice: \"\")")
            hint = "is there a stray comma? quote a text that holds one" if fmt == "csv" else "is there a stray tab?"
            raise StepwiseError(f"expected {width} columns, found {len(fields)}", path=path, line=line,
                                fix=f"every row needs the same columns as the first ({hint})")
    return rows, t_idx, l_idx, p_idx


def read_examples(path: str | Path, *, fmt: str | None = None, text_column: str | int | None = None,
                  label_column: str | int | None = None, require_labels: bool = True,
                  tag_column: int | None = None, prefer: str | None = None,
                  pair_column: str | int | None = None, keep_blank: bool = False) -> list[Example]:
    """Read a labeled file. With require_labels=False a missing label column is allowed (prediction).

    With keep_blank (prediction from plain text) a blank line is an example with empty text, so every
    input line gets exactly one output line.
    """
    if str(path) != "-" and Path(path).is_dir():
        raise StepwiseError("is a directory, not a file", path=path, fix="give the path of a data file inside it")
    fmt = detect_format(path, fmt, prefer)
    if fmt == "conll":
        from stepwise.tasks.tag.conll import read_conll
        return read_conll(path, tag_column=tag_column, require_labels=require_labels)
    text = read_text(path)
    examples: list[Example] = []
    if fmt == "jsonl":
        t_key = str(text_column or "text")
        l_key = str(label_column or "label")
        for i, obj in json_lines(text, path):
            if not isinstance(obj, dict):
                raise StepwiseError("the line is not a JSON object", path=path, line=i,
                                    fix=f'write {{"{t_key}": ..., "{l_key}": ...}}')
            value = obj.get(t_key)
            pair = None
            if pair_column is not None:
                pair = obj.get(str(pair_column))
                if not isinstance(pair, str):
                    raise StepwiseError(f"missing text field {str(pair_column)!r}", path=path, line=i,
                                        fix=f"give every line a {str(pair_column)!r} string")
            label = obj.get(l_key)
            if _is_tokens(value):  # tagging data as JSONL: {"text": [words], "label": [tags]}
                tags = label if _is_tokens(label) and len(label) == len(value) else None
                if tags is None and (label is not None or require_labels):
                    raise StepwiseError(f"{l_key!r} must be a list of tags, one per word in {t_key!r}", path=path,
                                        line=i, fix="give as many tags as words")
                doc = obj.get("doc")  # a saved split keeps each sentence's document
                examples.append(Example(list(value), tags, i, doc=doc if isinstance(doc, int) else None))
                continue
            if not isinstance(value, str) or not value.strip():
                raise StepwiseError(f"empty or missing text field {t_key!r}", path=path, line=i,
                                    fix=f"give every line a non-empty {t_key!r} string (or pass --text-column)")
            if label is None or str(label).strip() == "":
                if require_labels:
                    raise StepwiseError(f"missing label field {l_key!r}", path=path, line=i,
                                        fix=f"give every line a {l_key!r} (or pass --label-column)")
                label = None
            examples.append(Example(value.strip(), None if label is None else str(label).strip(), i, pair))
        return examples
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    if keep_blank and fmt == "tsv" and label_column is None and not any("\t" in ln for ln in lines):
        return Examples([Example(strip_invisible(ln), None, i) for i, ln in enumerate(lines, 1)])
    rows, t_idx, l_idx, p_idx = _read_rows(path, text, fmt, text_column, label_column, pair_column)
    if l_idx is None and require_labels:
        raise StepwiseError("no label column", path=path, line=1, fix="add a label column or pass --label-column")
    for line, fields in rows:
        value = strip_invisible(fields[t_idx])
        if not value:
            raise StepwiseError("empty text", path=path, line=line, fix="remove the row or fill in its text")
        label = fields[l_idx].strip() if l_idx is not None else None
        if not label:
            if require_labels:
                raise StepwiseError("missing label", path=path, line=line, fix="give every row a label")
            label = None
        examples.append(Example(value, label, line, None if p_idx is None else fields[p_idx].strip()))
    if not examples:
        raise StepwiseError("the file has a header but no examples", path=path, fix="add rows below the header")
    return examples
