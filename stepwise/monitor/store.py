"""The monitor's SQLite store (WAL): events with their predictions, company mentions, per-company/per-window
aggregates, rejects, alerts and the webhook outbox.

Idempotent by event id: an event is aggregated only in the transaction that inserts it, so a batch is
either all in (events, aggregates, checked windows, alerts, outbox) or not at all. A process killed at any
point and restarted on the same input counts every event exactly once.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stepwise.errors import StepwiseError
from stepwise.monitor.events import Event, Reject

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY, time REAL NOT NULL, text TEXT NOT NULL, source TEXT,
    label TEXT NOT NULL, score REAL NOT NULL, probs TEXT NOT NULL, ingested REAL NOT NULL);
CREATE INDEX IF NOT EXISTS events_time ON events (time);
CREATE TABLE IF NOT EXISTS mentions (
    company TEXT NOT NULL, window_start REAL NOT NULL, event_id TEXT NOT NULL,
    PRIMARY KEY (company, window_start, event_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS aggregates (
    company TEXT NOT NULL, window_start REAL NOT NULL, n INTEGER NOT NULL DEFAULT 0,
    negative INTEGER NOT NULL DEFAULT 0, neutral INTEGER NOT NULL DEFAULT 0, positive INTEGER NOT NULL DEFAULT 0,
    score_sum REAL NOT NULL DEFAULT 0, checked INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (company, window_start));
CREATE INDEX IF NOT EXISTS aggregates_unchecked ON aggregates (checked, window_start);
CREATE TABLE IF NOT EXISTS rejects (
    id INTEGER PRIMARY KEY, input TEXT NOT NULL, line INTEGER NOT NULL, raw TEXT NOT NULL, reason TEXT NOT NULL,
    at REAL NOT NULL, UNIQUE (input, line, raw));
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY, company TEXT NOT NULL, window_start REAL NOT NULL, window_end REAL NOT NULL,
    direction TEXT NOT NULL, n INTEGER NOT NULL, share REAL NOT NULL, baseline_share REAL NOT NULL,
    baseline_n INTEGER NOT NULL, z REAL NOT NULL, p_value REAL NOT NULL, mean REAL NOT NULL,
    baseline_mean REAL NOT NULL, created REAL NOT NULL,
    UNIQUE (company, window_start, direction));
CREATE TABLE IF NOT EXISTS outbox (
    alert_id INTEGER PRIMARY KEY REFERENCES alerts (id), url TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL, delivered REAL, last_error TEXT);
"""
MAX_RAW = 2000  # characters of a rejected line kept
TABLES = frozenset({"meta", "events", "mentions", "aggregates", "rejects", "alerts", "outbox"})
FORMAT = 1  # meta "format": a database written by a newer stepwise (a higher number) is refused, not altered
FOREIGN_FIX = "give --db a new file name or the monitor's own database"


@dataclass(frozen=True)
class Scored:
    """An event with its prediction: label, polarity class (-1, 0, 1), score in [-1, 1], the companies."""

    event: Event
    label: str
    polarity: int
    score: float
    probs: dict[str, float]
    companies: Sequence[str]


@dataclass(frozen=True)
class Window:
    """One company's aggregate over one window."""

    company: str
    start: float
    n: int
    negative: int
    neutral: int
    positive: int
    score_sum: float

    @property
    def mean(self) -> float:
        return self.score_sum / self.n if self.n else 0.0


def connect(path: str | Path, *, create: bool = True) -> sqlite3.Connection:
    """A connection in WAL mode that waits for a busy writer instead of failing."""
    path = Path(path)
    if not create and not path.is_file():
        raise StepwiseError("no monitor database here", path=path, fix="run `stepwise monitor ... --db` first")
    if path.is_dir():
        raise StepwiseError("--db is a directory", path=path, fix="give --db a file name, e.g. monitor.sqlite")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
        try:
            check_identity(conn, path, create=create)  # read only: nothing is written into a file not ours
        except StepwiseError:
            conn.close()
            raise
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # with WAL: a killed process loses nothing committed
        conn.execute("PRAGMA busy_timeout=30000")
    except sqlite3.DatabaseError as err:
        raise StepwiseError(f"not a usable SQLite database ({err})", path=path,
                            fix="give --db a new file name or the monitor's own database") from None
    return conn


def check_identity(conn: sqlite3.Connection, path: Path, *, create: bool) -> None:
    """The database is the monitor's (its tables, a format this stepwise reads) or, when `create`, empty."""
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables:
        if create:
            return
        raise StepwiseError("the monitor database is empty", path=path, fix="run `stepwise monitor ... --db` first")
    if not {"meta", "events", "aggregates"} <= tables:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise StepwiseError(f"not a monitor database (it holds other tables: {shown})", path=path, fix=FOREIGN_FIX)
    row = conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
    try:
        written = 1 if row is None else json.loads(row[0])
    except (TypeError, ValueError):
        written = None
    if not isinstance(written, int) or isinstance(written, bool):
        raise StepwiseError("the monitor database's format entry is damaged", path=path, fix=FOREIGN_FIX)
    if written > FORMAT:
        raise StepwiseError(f"the monitor database was written by a newer stepwise (format {written}; this one "
                            f"reads up to {FORMAT})", path=path, fix="upgrade stepwise, or give --db a new file")


class Store:
    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        self.conn = connect(path, create=create)
        try:
            self.conn.executescript(SCHEMA)
            self.conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('format', ?)", (json.dumps(FORMAT),))
        except sqlite3.DatabaseError as err:
            self.conn.close()
            raise StepwiseError(f"not a monitor database ({err})", path=path,
                                fix="give --db a new file name or the monitor's own database") from None

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction: all of it is committed or none of it."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # --- settings ---------------------------------------------------------------------------------
    def meta(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_meta(self, key: str, value: Any) -> None:
        self.conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = "
                          "excluded.value", (key, json.dumps(value)))

    def settle(self, settings: dict[str, Any]) -> None:
        """Record the settings a database is built with; a later run must use the same ones."""
        with self.transaction():
            for key, value in settings.items():
                stored = self.meta(key)
                if stored is None:
                    self.set_meta(key, value)
                elif stored != value:
                    raise StepwiseError(f"this database was built with {key} {stored!r}, not {value!r}",
                                        path=self.path, fix=f"use the same {key} or a new --db")

    # --- ingestion --------------------------------------------------------------------------------
    def known_ids(self, ids: Sequence[str]) -> set[str]:
        known: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = list(ids[start:start + 500])
            marks = ",".join("?" * len(chunk))
            known.update(r[0] for r in self.conn.execute(f"SELECT id FROM events WHERE id IN ({marks})", chunk))
        return known

    def add(self, scored: Iterable[Scored], window: float) -> int:
        """Insert events (within a transaction); aggregate only the ones not stored before. Returns how many."""
        now, added, newest = time.time(), 0, None
        for item in scored:
            ev = item.event
            cur = self.conn.execute(
                "INSERT OR IGNORE INTO events (id, time, text, source, label, score, probs, ingested) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (ev.id, ev.time, ev.text, ev.source, item.label, item.score, json.dumps(item.probs), now))
            if cur.rowcount != 1:
                continue  # already counted
            added += 1
            newest = ev.time if newest is None else max(newest, ev.time)
            start = window_start(ev.time, window)
            cls = ("negative", "neutral", "positive")[item.polarity + 1]
            for company in dict.fromkeys(item.companies):
                self.conn.execute("INSERT INTO mentions (company, window_start, event_id) VALUES (?, ?, ?)",
                                  (company, start, ev.id))
                self.conn.execute(
                    f"INSERT INTO aggregates (company, window_start, n, {cls}, score_sum) VALUES (?, ?, 1, 1, ?) "
                    f"ON CONFLICT (company, window_start) DO UPDATE SET n = n + 1, {cls} = {cls} + 1, "
                    "score_sum = score_sum + excluded.score_sum", (company, start, item.score))
        if newest is not None and newest > self.meta("watermark", -math.inf):
            self.set_meta("watermark", newest)
        return added

    def reject(self, rejects: Iterable[Reject], input_name: str) -> int:
        now, added = time.time(), 0
        for r in rejects:
            cur = self.conn.execute("INSERT OR IGNORE INTO rejects (input, line, raw, reason, at) "
                                    "VALUES (?, ?, ?, ?, ?)", (input_name, r.line, r.raw[:MAX_RAW], r.reason, now))
            added += cur.rowcount
        return added

    # --- windows ----------------------------------------------------------------------------------
    def unchecked(self, closed_before: float) -> list[Window]:
        """Windows not yet looked at by the detector whose end is at or before `closed_before`, oldest first."""
        rows = self.conn.execute(f"SELECT {WINDOW_COLUMNS} FROM aggregates WHERE checked = 0 AND window_start + ? <= ? "
                                 "ORDER BY window_start, company", (self.meta("window"), closed_before))
        return [Window(*r) for r in rows]

    def mark_checked(self, windows: Iterable[Window]) -> None:
        self.conn.executemany("UPDATE aggregates SET checked = 1 WHERE company = ? AND window_start = ?",
                              [(w.company, w.start) for w in windows])

    def windows(self, company: str, start: float = -math.inf, end: float = math.inf) -> list[Window]:
        """A company's windows with start in [start, end), oldest first."""
        rows = self.conn.execute(f"SELECT {WINDOW_COLUMNS} FROM aggregates WHERE company = ? AND window_start >= ? "
                                 "AND window_start < ? ORDER BY window_start", (company, start, end))
        return [Window(*r) for r in rows]

    def companies(self) -> list[tuple[str, int]]:
        """(company, events) by volume, largest first."""
        return [(c, n) for c, n in self.conn.execute(
            "SELECT company, SUM(n) AS total FROM aggregates GROUP BY company ORDER BY total DESC, company")]

    def events_in(self, company: str, start: float, limit: int, most: str = "negative") -> list[dict[str, Any]]:
        """A window's most negative events (lowest score first), or its most positive ones; one per text."""
        pick, order = ("MAX", "score DESC") if most == "positive" else ("MIN", "score")
        rows = self.conn.execute(  # SQLite takes the bare columns from the row holding the MIN/MAX
            f"SELECT e.id, e.time, e.text, e.source, e.label, {pick}(e.score) AS score FROM mentions m "
            "JOIN events e ON e.id = m.event_id WHERE m.company = ? AND m.window_start = ? GROUP BY e.text "
            f"ORDER BY {order}, e.time LIMIT ?", (company, start, limit))
        return [dict(zip(("id", "time", "text", "source", "label", "score"), r)) for r in rows]

    # --- alerts -----------------------------------------------------------------------------------
    def add_alert(self, alert: dict[str, Any], webhook: str | None) -> int | None:
        """Store an alert (once per company, window and direction) and queue it for the webhook."""
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO alerts (company, window_start, window_end, direction, n, share, baseline_share, "
            "baseline_n, z, p_value, mean, baseline_mean, created) VALUES (:company, :window_start, :window_end, "
            ":direction, :n, :share, :baseline_share, :baseline_n, :z, :p_value, :mean, :baseline_mean, :created)",
            alert)
        if cur.rowcount != 1:
            return None
        if webhook:
            self.conn.execute("INSERT INTO outbox (alert_id, url, next_try) VALUES (?, ?, ?)",
                              (cur.lastrowid, webhook, time.time()))
        return cur.lastrowid

    def alerted(self, company: str, start: float, end: float) -> set[float]:
        """Starts of a company's windows in [start, end) that raised an alert."""
        rows = self.conn.execute("SELECT window_start FROM alerts WHERE company = ? AND window_start >= ? "
                                 "AND window_start < ?", (company, start, end))
        return {r[0] for r in rows}

    def alerts(self) -> list[dict[str, Any]]:
        cur = self.conn.execute("SELECT * FROM alerts ORDER BY window_start, company")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur]

    def counts(self) -> dict[str, int]:
        q = self.conn.execute
        return {"events": q("SELECT COUNT(*) FROM events").fetchone()[0],
                "rejects": q("SELECT COUNT(*) FROM rejects").fetchone()[0],
                "alerts": q("SELECT COUNT(*) FROM alerts").fetchone()[0],
                "companies": q("SELECT COUNT(DISTINCT company) FROM aggregates").fetchone()[0],
                "outbox_pending": q("SELECT COUNT(*) FROM outbox WHERE delivered IS NULL").fetchone()[0]}

    def reject_reasons(self) -> list[tuple[str, int]]:
        return list(self.conn.execute("SELECT reason, COUNT(*) FROM rejects GROUP BY reason ORDER BY 2 DESC"))


WINDOW_COLUMNS = "company, window_start, n, negative, neutral, positive, score_sum"


def window_start(t: float, window: float) -> float:
    """The start of the window holding time t (windows are aligned on the epoch, UTC)."""
    return math.floor(t / window) * window
