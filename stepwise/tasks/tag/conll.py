"""CoNLL column files: one token per line, blank line between sentences, -DOCSTART- lines number documents."""

from __future__ import annotations

import re
from pathlib import Path

from stepwise.data.text import INVISIBLE, read_text, strip_invisible
from stepwise.errors import StepwiseError
from stepwise.example import Example, Examples

PREFIXES = {"B", "I", "E", "S"}


def read_conll(path: str | Path, *, tag_column: int | None = None, require_labels: bool = True) -> Examples:
    """Sentences as word lists with their tags (tag column: `tag_column`, default the last).

    With require_labels=False a file of bare tokens (one column) is accepted; its labels are None.
    A line of only invisible characters (U+FEFF, zero-width spaces) is a blank line, and such characters
    inside a token are dropped; how many is counted in `cleaned`.
    """
    text = read_text(path)
    # documents are numbered 0, 1, ... by their -DOCSTART- lines (None for all when the file has none)
    has_docs = "-DOCSTART-" in text and any(strip_invisible(ln).startswith("-DOCSTART-") for ln in text.split("\n"))
    doc: int | None = 0 if has_docs else None
    doc_used = False
    sentences = Examples()
    invisible = 0
    words: list[str] = []
    tags: list[str] = []
    start = 0
    width: int | None = None
    for number, raw in enumerate(text.split("\n"), 1):
        line = strip_invisible(raw)
        if not line or line.startswith("-DOCSTART-"):
            if words:
                sentences.append(Example(words, tags if tags else None, start, doc=doc))
                doc_used = True
            words, tags = [], []
            if line.startswith("-DOCSTART-") and doc is not None and doc_used:
                doc, doc_used = doc + 1, False
            continue
        fields = line.split()
        if any(c in INVISIBLE for c in line):
            cleaned = [f.translate(_DROP_INVISIBLE) for f in fields]
            invisible += sum(len(a) - len(b) for a, b in zip(fields, cleaned))
            fields = [f for f in cleaned if f]
        if width is None:
            width = len(fields)
            if width < 2 and require_labels:
                raise StepwiseError("expected a token and a tag column, found 1 column", path=path, line=number,
                                    fix="separate token and tag with a space or tab")
        if len(fields) != width:
            raise StepwiseError(f"expected {width} columns, found {len(fields)}", path=path, line=number,
                                fix="every token line needs the same columns (a space inside a token?)")
        if not words:
            start = number
        words.append(fields[0])
        if width >= 2:
            column = width - 1 if tag_column is None else tag_column
            if not 0 < column < width:
                raise StepwiseError(f"tag column {column} out of range for {width} columns", path=path,
                                    line=number, fix=f"pass --tag-column between 1 and {width - 1}")
            tag = fields[column]
            check_tag(tag, path, number)
            tags.append(tag)
    if words:
        sentences.append(Example(words, tags if tags else None, start, doc=doc))
    if not sentences:
        raise StepwiseError("no sentences found", path=path, fix="give one token per line, blank line between "
                            "sentences")
    if invisible:
        sentences.cleaned["invisible_characters"] = invisible
    return sentences


_DROP_INVISIBLE = {ord(c): None for c in INVISIBLE}


def check_tag(tag: str, path: str | Path, line: int) -> None:
    if tag == "O":
        return
    prefix, _, kind = tag.partition("-")
    if prefix not in PREFIXES or not kind:
        raise StepwiseError(f"unknown tag scheme for tag {tag!r}", path=path, line=line,
                            fix="use BIO (B-X, I-X, O) or IOBES (B-X, I-X, E-X, S-X, O) tags")


def detect_scheme(tag_lists: list[list[str]]) -> str:
    """IOBES when any E-/S- tag occurs, else BIO."""
    return "IOBES" if any(t[:2] in ("E-", "S-") for tags in tag_lists for t in tags) else "BIO"


def repair(tags: list[str], scheme: str = "BIO") -> tuple[list[str], int]:
    """Make a tag sequence valid: an entity must begin with B- (or S-); returns the tags and the fix count.

    BIO: I-X after O or another type becomes B-X. IOBES additionally closes entities: a B-X/I-X not
    followed by I-X/E-X becomes S-X/E-X.
    """
    out = list(tags)
    fixes = 0
    for i, tag in enumerate(out):
        if tag[:2] in ("I-", "E-"):
            prev = out[i - 1] if i else "O"
            if prev == "O" or prev[2:] != tag[2:] or prev[:2] in ("E-", "S-"):
                out[i] = ("B-" if tag[:2] == "I-" or scheme == "BIO" else "S-") + tag[2:]
                if scheme == "IOBES" and tag[:2] == "I-":
                    out[i] = "B-" + tag[2:]
                fixes += 1
    if scheme == "IOBES":
        for i, tag in enumerate(out):
            nxt = out[i + 1] if i + 1 < len(out) else "O"
            continues = nxt[:2] in ("I-", "E-") and nxt[2:] == tag[2:]
            if tag[:2] == "B-" and not continues:
                out[i] = "S-" + tag[2:]
                fixes += 1
            elif tag[:2] == "I-" and not continues:
                out[i] = "E-" + tag[2:]
                fixes += 1
    return out, fixes


CONLL_SUFFIXES = {".conll", ".bio", ".iob", ".iobes", ".conllu"}


TAG = re.compile(r"^(O|[BIES]-\S+)$")


def is_conll(path: str, input_format: str | None) -> bool:
    """--format conll, a CoNLL extension, or a .txt (or extensionless) file that looks like CoNLL."""
    suffix = Path(path).suffix.lower()
    if input_format == "conll" or suffix in CONLL_SUFFIXES:
        return True
    return input_format is None and suffix in (".txt", "") and looks_like_conll(path)


def looks_like_conll(path: str) -> bool:
    """A -DOCSTART- line, or token lines without tabs whose last column is a BIO/IOBES tag."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as fh:
            lines = [ln.strip() for _, ln in zip(range(200), fh) if ln.strip()]
    except OSError:
        return False
    if not lines:
        return False
    if lines[0].startswith("-DOCSTART-"):
        return True
    fields = [ln.split() for ln in lines[:50]]
    return all("\t" not in ln for ln in lines[:50]) and all(len(f) >= 2 and TAG.match(f[-1]) for f in fields)
