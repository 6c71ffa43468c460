"""Reading a text file safely: UTF-8 only, no control bytes, invisible characters stripped, JSON lines.

The one place every reader (tables, CoNLL, pairs, plain text) gets its text from.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from stepwise.errors import StepwiseError

#: characters a user does not see: a line of only these (and whitespace) is a blank line
INVISIBLE = "\ufeff\u200b\u200c\u200d\u2060"


def strip_invisible(text: str) -> str:
    return text.strip().strip(INVISIBLE).strip()


def read_text(path: str | Path) -> str:
    """Whole file as text; missing, empty and non-UTF-8 files are reported with their line."""
    p = Path(path)
    if str(path) == "-":
        import sys
        data = sys.stdin.buffer.read()
    elif not p.is_file():
        raise StepwiseError("file not found", path=path, fix="check the path")
    else:
        data = p.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise StepwiseError(f"bytes that are not UTF-8 (byte 0x{data[err.start]:02x})", path=path, line=line,
                            fix="re-encode the file as UTF-8") from None
    bad = CONTROL.search(text)
    if bad:  # a binary file, or bytes that would pass into outputs unseen (str.split takes some for spaces)
        line = text.count("\n", 0, bad.start()) + 1
        if bad.group() == "\x00":
            raise StepwiseError("a NUL byte: this is a binary file or a damaged one, not text", path=path, line=line,
                                fix="give a UTF-8 text file")
        raise StepwiseError(f"a control character (U+{ord(bad.group()):04X}), which is not text", path=path,
                            line=line, fix="remove the control characters from the file (tabs and newlines are fine)")
    if not text.strip():
        raise StepwiseError("the file is empty", path=path, fix="give a file with at least one example")
    return text


#: C0 control characters other than tab, newline and carriage return: never part of a text
CONTROL = re.compile("[\x00-\x08\x0b-\x0c\x0e-\x1f]")


def json_lines(text: str, path: str | Path) -> Iterator[tuple[int, object]]:
    """(line number, value) for each non-blank line of a JSON-lines text; bad JSON is one clear error."""
    for i, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            yield i, json.loads(line)
        except json.JSONDecodeError as err:
            raise StepwiseError(f"invalid JSON ({err.msg})", path=path, line=i,
                                fix="each line must be one JSON object") from None
