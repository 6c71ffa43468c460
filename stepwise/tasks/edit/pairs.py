"""Reading (source, corrected) sentence pairs: TSV, JSONL, or parallel files — every problem one line.

An example's `text` is the source sentence and its `label` the list of reference corrections (one or
more). Sentences are whitespace-tokenized, as in JFLEG and CoNLL files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from stepwise.data.readers import detect_format
from stepwise.data.text import json_lines, read_text, strip_invisible
from stepwise.errors import StepwiseError
from stepwise.example import Example, Examples

SOURCE_KEY, TARGET_KEY = "source", "target"


def read_pairs(path: str | Path, *, targets: Sequence[str] | None = None, fmt: str | None = None,
               text_column: str | int | None = None, label_column: str | int | None = None,
               require_labels: bool = True, keep_blank: bool = False, **_: object) -> list[Example]:
    """Examples from `path` (TSV `source<TAB>target[<TAB>target…]`, JSONL, or plain sources + `targets`)."""
    if str(path) != "-" and Path(path).is_dir():
        raise StepwiseError("is a directory, not a file", path=path, fix="give the path of a data file inside it")
    if targets:
        return _read_parallel(path, targets)
    fmt = detect_format(path, fmt, prefer="tsv")
    if fmt == "jsonl":
        return _read_jsonl(path, str(text_column or SOURCE_KEY), str(label_column or TARGET_KEY), require_labels)
    if fmt not in ("tsv", "csv"):
        raise StepwiseError(f"an editor reads sentence pairs, not {fmt}", path=path,
                            fix="give source<TAB>target lines (TSV), JSONL {\"source\", \"target\"}, or plain "
                            "sources with --train-target")
    return _read_tsv(path, require_labels, keep_blank)


def _read_tsv(path: str | Path, require_labels: bool, keep_blank: bool) -> list[Example]:
    examples = Examples()
    for i, line in enumerate(_lines(path), 1):
        fields = [strip_invisible(f) for f in line.split("\t")]
        source, refs = fields[0], [f for f in fields[1:] if f]
        if not source:
            if keep_blank and not refs:
                examples.append(Example("", None, i))
                continue
            if not any(fields):
                continue
            raise StepwiseError("empty source sentence", path=path, line=i, fix="remove the row or fill in its source")
        if not refs and require_labels:
            raise StepwiseError("no corrected sentence after the source", path=path, line=i,
                                fix="write source<TAB>target (the target may equal the source)")
        examples.append(Example(source, refs or None, i))
    return _nonempty(examples, path)


def _read_jsonl(path: str | Path, s_key: str, t_key: str, require_labels: bool) -> list[Example]:
    examples = Examples()
    for i, obj in json_lines(read_text(path), path):
        source = obj.get(s_key) if isinstance(obj, dict) else None
        if not isinstance(source, str) or not source.strip():
            raise StepwiseError(f"empty or missing {s_key!r} string", path=path, line=i,
                                fix=f'write {{"{s_key}": "...", "{t_key}": "..." or ["...", ...]}}')
        target = obj.get(t_key)
        refs = [target] if isinstance(target, str) else target
        if target is None and not require_labels:
            refs = None
        elif not isinstance(refs, list) or not refs or not all(isinstance(r, str) and r.strip() for r in refs):
            raise StepwiseError(f"{t_key!r} must be a sentence or a list of sentences", path=path, line=i,
                                fix=f'write "{t_key}": "the corrected sentence" (or a list of references)')
        examples.append(Example(source.strip(), None if refs is None else [r.strip() for r in refs], i))
    return _nonempty(examples, path)


def _read_parallel(path: str | Path, targets: Sequence[str]) -> list[Example]:
    sources = _lines(path)
    columns = []
    for target in targets:
        lines = _lines(target)
        if len(lines) != len(sources):
            raise StepwiseError(f"{len(lines)} lines, but the source file has {len(sources)}", path=target,
                                fix="give one corrected sentence per source line, in the same order")
        columns.append(lines)
    examples = Examples()
    for i, source in enumerate(sources, 1):
        refs = [strip_invisible(c[i - 1]) for c in columns]
        if not strip_invisible(source):
            if any(refs):
                raise StepwiseError("empty source sentence with a non-empty target", path=path, line=i,
                                    fix="remove the line from the source and every target file")
            continue
        for target, ref in zip(targets, refs):
            if not ref:
                raise StepwiseError("empty corrected sentence", path=target, line=i,
                                    fix="write the corrected sentence (it may equal the source)")
        examples.append(Example(strip_invisible(source), refs, i))
    return _nonempty(examples, path)


def _lines(path: str | Path) -> list[str]:
    lines = read_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln.rstrip("\r") for ln in lines]


def _nonempty(examples: Examples, path: str | Path) -> Examples:
    if not examples:
        raise StepwiseError("no sentences in the file", path=path, fix="add source<TAB>target lines")
    return examples
