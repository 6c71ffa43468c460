"""Events: JSON lines `{"id", "time", "text", "source"?}` read in batches from a file, stdin, or a file that
keeps growing (`follow`). A bad line is a `Reject` with its reason, never an exception: the stream goes on.
"""

from __future__ import annotations

import json
import os
import re
import select
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

from stepwise.errors import StepwiseError

MAX_EPOCH = 1e11  # seconds; a larger number is most likely milliseconds
# a time is stored only in [0, MAX_EPOCH) (1970 to 5138) and a duration only up to MAX_EPOCH: every window start
# and end then stays a date (years 1 to 9999) that the report, the alerts and matplotlib can read back
MAX_YEAR = datetime.fromtimestamp(MAX_EPOCH, timezone.utc).year
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


@dataclass(frozen=True)
class Event:
    id: str
    time: float  # seconds since the epoch, UTC
    text: str
    source: str | None
    line: int


@dataclass(frozen=True)
class Reject:
    line: int
    raw: str
    reason: str


def parse_duration(value: str | float, flag: str = "--window", *, zero: bool = False) -> float:
    """`1h`, `15m`, `30s`, `1d` or a number of seconds (0 only if `zero`)."""
    match = DURATION.match(str(value))
    if not match or (float(match.group(1)) <= 0 and not zero):
        raise StepwiseError(f"{flag} {value!r} is not a duration", fix=f"e.g. {flag} 1h, 15m, 30s or 1d")
    seconds = float(match.group(1)) * UNITS[match.group(2)]
    if seconds > MAX_EPOCH:
        raise StepwiseError(f"{flag} {value!r} is longer than {MAX_EPOCH:.0e} seconds (3000 years)",
                            fix=f"e.g. {flag} 1h, 15m, 30s or 1d")
    return seconds


def parse_time(value: object) -> float | None:
    """ISO 8601 (a time without an offset is UTC) or epoch seconds, from 1970 up to MAX_EPOCH; None if neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if 0 <= value < MAX_EPOCH else None
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        stamp = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    try:
        seconds = stamp.timestamp()
    except (OverflowError, ValueError):  # year 1 or 9999 shifted out of range by its offset
        return None
    return seconds if 0 <= seconds < MAX_EPOCH else None  # the range stored: it reads back as a date


def parse_event(raw: str, line: int) -> Event | Reject:
    """One line → an Event, or a Reject saying what is wrong with it."""
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError:
        return Reject(line, raw, "not JSON")
    if not isinstance(obj, dict):
        return Reject(line, raw, "not a JSON object")
    event_id = obj.get("id")
    if isinstance(event_id, bool) or not isinstance(event_id, (str, int)) or not str(event_id).strip():
        return Reject(line, raw, "no id (a non-empty string or an integer)")
    text = obj.get("text")
    if not isinstance(text, str) or not text.strip():
        return Reject(line, raw, "no text")
    if "time" not in obj:
        return Reject(line, raw, "no time")
    when = parse_time(obj["time"])
    if when is None:
        return Reject(line, raw, f"bad time (ISO 8601 or epoch seconds, from 1970 to {MAX_YEAR})")
    source = obj.get("source")
    return Event(str(event_id).strip(), when, text, None if source is None else str(source), line)


def read_lines(path: str, *, follow: bool = False, batch_size: int = 64, stop_after_idle: float | None = None,
               poll: float = 0.2) -> Iterator[list[tuple[int, str]]]:
    """Batches of (line number, line) from a file or stdin (`-`), blank lines skipped.

    A batch is handed over when it is full or when no more input is there right now, so a slow stream is
    not held back. With `follow`, the end of a regular file is not the end: new lines are read as they are
    appended (a last line without its newline waits for it), and a file that is rotated (replaced) or
    truncated is read again from its start (event ids make that harmless). `stop_after_idle` ends after that
    many seconds without a new line (with `follow`, or on a pipe).
    """
    fd = 0 if path == "-" else _open(path)
    regular = stat.S_ISREG(os.fstat(fd).st_mode)
    buffer, pending, number = b"", [], 0
    idle_since = time.monotonic()
    try:
        while True:
            if not regular and not select.select([fd], [], [], poll)[0]:
                data = None  # a pipe with nothing to read right now
            else:
                data = os.read(fd, 1 << 16)
                if data == b"" and not (regular and follow):
                    if buffer.strip():
                        number += 1
                        pending.append((number, _decode(buffer)))
                    if pending:
                        yield pending
                    return
            if data:
                idle_since = time.monotonic()
                *lines, buffer = (buffer + data).split(b"\n")
                for line in lines:
                    number += 1
                    if line.strip():
                        pending.append((number, _decode(line)))
                while len(pending) >= batch_size:
                    yield pending[:batch_size]
                    pending = pending[batch_size:]
                continue
            if pending:  # nothing more right now: hand over what there is
                yield pending
                pending = []
            if stop_after_idle is not None and time.monotonic() - idle_since >= stop_after_idle:
                return
            if regular:
                if _replaced(path, fd):  # rotated or truncated: read the new file from its start
                    os.close(fd)
                    fd, buffer, number = _open(path), b"", 0
                    continue
                time.sleep(poll)
    finally:
        if fd != 0:
            os.close(fd)


def _open(path: str) -> int:
    if os.path.isdir(path):
        raise StepwiseError("input is a directory", path=path, fix="give a JSONL file")
    try:
        return os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise StepwiseError("input file not found", path=path,
                            fix="check the path, or use --input - for stdin") from None
    except OSError as err:
        raise StepwiseError(f"cannot read the input ({err.strerror})", path=path) from None


def _replaced(path: str, fd: int) -> bool:
    """Whether the file at `path` is no longer the one open at `fd`, or is shorter than what was read."""
    try:
        now = os.stat(path)
    except OSError:
        return False  # between a rotation's rename and the new file: keep waiting
    mine = os.fstat(fd)
    return now.st_ino != mine.st_ino or now.st_size < os.lseek(fd, 0, os.SEEK_CUR)


def _decode(line: bytes) -> str:
    return line.decode("utf-8", errors="replace").rstrip("\r")
