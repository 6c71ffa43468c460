"""Recipe: the financial sentiment monitor (`stepwise monitor`, `stepwise monitor report`).

events (JSONL, a file, stdin, or a growing file) → validate (bad lines to `rejects`) → skip ids already
stored → classify in batches (and tag organisations) → one transaction per batch: events, mentions,
per-company/per-window aggregates, the detector's verdict on every window that closed, alerts and their
webhook outbox rows → alerts printed as JSON lines; a background thread delivers the outbox.

A window closes when an event past its end (plus `lateness`) has been seen, and at the end of the input
(not when a `--follow` run stops: the next run goes on with the same windows).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional
from urllib.parse import urlparse

from pydantic import Field, field_validator

from stepwise.backends import backend_names
from stepwise.errors import StepwiseError
from stepwise.monitor.alerts import Detector, Outbox, alert_record
from stepwise.monitor.companies import ALL, companies_of
from stepwise.monitor.events import Event, Reject, parse_duration, parse_event, read_lines
from stepwise.monitor.store import Scored, Store
from stepwise.options import Options
from stepwise.places import FILE, check_output

NEGATIVE = {"negative", "neg", "bearish", "bad", "down", "sell"}
POSITIVE = {"positive", "pos", "bullish", "good", "up", "buy"}


class MonitorOptions(Options):
    """How `stepwise monitor` (and `monitor()` from Python) reads, scores, stores and alerts: one declaration,
    the flags generated from it, the same checks for both."""

    fix: ClassVar[str] = "see `stepwise monitor --help`"

    window: float = Field("1h", validate_default=True, json_schema_extra={"type": str},
                          description="aggregation window: 30s, 15m, 1h, 1d or seconds")
    follow: bool = Field(False, json_schema_extra={"store_true": True},
                         description="keep reading lines appended to the input file")
    stop_after_idle: Optional[float] = Field(None, json_schema_extra={"metavar": "S"},
                                             description="stop after S seconds without a new line")
    labels: dict[str, str] = Field(default_factory=dict, json_schema_extra={"type": str, "metavar": "L=NAME,..."},
                                   description="name the classifier's labels, e.g. 0=bearish,1=bullish,2=neutral "
                                   "(negative/bearish and positive/bullish names set the direction)")
    batch_size: int = Field(256, ge=1, description="most events predicted together (a slow stream's batches are "
                            "smaller)")
    lateness: float = Field("0s", validate_default=True, json_schema_extra={"type": str},
                            description="how long a window stays open after a later event")
    z: float = Field(4.0, gt=0, description="alert when a window's share of negative events is this significant "
                     "against the rolling baseline (exact binomial tail, as a normal z)")
    min_count: int = Field(10, ge=1, description="events a window needs to be judged")
    min_shift: float = Field(0.2, ge=0, lt=1, description="and the share must rise by at least this much")
    baseline_windows: int = Field(24, ge=1, description="previous windows forming the baseline")
    alert_on: Literal["negative", "both"] = Field("negative", description="turns that alert")
    webhook: Optional[str] = Field(None, json_schema_extra={"metavar": "URL"},
                                   description="POST each alert as JSON here (queued, retried with backoff)")
    webhook_wait: float = Field(10.0, description="seconds to let queued alerts go out at the end; the rest "
                                "go on the next run")
    backend: str = Field("auto", json_schema_extra={"choices": backend_names},
                         description="auto: ONNX Runtime for an exported directory, torch for a run")
    threads: Optional[int] = Field(None, ge=1, description="inference threads (default: the cores other processes "
                                   "leave free)")
    poll: float = Field(0.2, gt=0, json_schema_extra={"flag": False}, description="seconds between reads (--follow)")
    webhook_backoff: float = Field(1.0, gt=0, json_schema_extra={"flag": False},
                                   description="first retry delay; doubles per attempt up to 60 s")

    @field_validator("window", mode="before")
    @classmethod
    def _window(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("lateness", mode="before")
    @classmethod
    def _lateness(cls, value: Any) -> float:
        return parse_duration(value, "--lateness", zero=True)

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> Any:
        return parse_label_map(value) if isinstance(value, str) or value is None else value

    @field_validator("backend")
    @classmethod
    def _backend(cls, value: str) -> str:
        if value not in backend_names():
            raise StepwiseError(f"unknown backend {value!r}", fix=f"use one of {', '.join(backend_names())}")
        return value

    def detector(self) -> Detector:
        """The alert rule these options describe."""
        return Detector(self.window, z=self.z, min_count=self.min_count, min_shift=self.min_shift,
                        baseline_windows=self.baseline_windows, direction=self.alert_on)


def parse_label_map(text: str | None) -> dict[str, str]:
    """`0=bearish,1=bullish,2=neutral` → {'0': 'bearish', ...}."""
    if not text:
        return {}
    pairs = [item.partition("=") for item in text.split(",") if item.strip()]
    if not pairs or any(not sep or not k.strip() or not v.strip() for k, sep, v in pairs):
        raise StepwiseError(f"--labels {text!r} is not LABEL=NAME,...",
                            fix="e.g. --labels 0=bearish,1=bullish,2=neutral")
    return {k.strip(): v.strip() for k, _, v in pairs}


def polarity(labels: list[str], names: dict[str, str]) -> dict[str, int]:
    """Each (renamed) label's direction: -1 negative, +1 positive, 0 anything else."""
    unknown = sorted(set(names) - set(labels))
    if unknown:
        raise StepwiseError(f"--labels names {', '.join(unknown)}, which the classifier does not have "
                            f"(its labels: {', '.join(labels)})", fix="name the classifier's own labels")
    renamed = [names.get(label, label) for label in labels]
    signs = {n: -1 if n.lower() in NEGATIVE else 1 if n.lower() in POSITIVE else 0 for n in renamed}
    if -1 not in signs.values() or 1 not in signs.values():
        raise StepwiseError(f"cannot tell which of the classifier's labels ({', '.join(labels)}) are negative and "
                            "positive", fix="name them, e.g. --labels 0=bearish,1=bullish,2=neutral "
                            f"(negative: {', '.join(sorted(NEGATIVE))}; positive: {', '.join(sorted(POSITIVE))})")
    return signs


def check_webhook(url: str | None) -> None:
    if url is not None and (urlparse(url).scheme not in ("http", "https") or not urlparse(url).netloc):
        raise StepwiseError(f"--webhook {url!r} is not an http(s) URL", fix="e.g. --webhook http://127.0.0.1:9000/hook")


def load_model(path: str | Path, predicts: str, flag: str, backend: str = "auto", threads: int | None = None) -> Any:
    """A Predictor for a run or an exported directory, whose task predicts `predicts` ("label" or "tags")."""
    from stepwise.predictor import load_in_process
    from stepwise.rundir import model_meta
    from stepwise.tasks import task_class, task_names, task_predicting

    meta = model_meta(path)
    task = task_predicting(predicts)
    known = meta.get("task") in task_names()
    if not known or getattr(task_class(meta["task"]), "predicts", None) != predicts:
        raise StepwiseError(f"{flag} needs a {task} run, this is a {meta.get('task')} run", path=path,
                            fix=f"pass a run trained with --task {task}")
    return load_in_process(path, backend=backend, threads=threads)


def monitor(classifier: str | Path | None, input: str, db: str | Path, *, tagger: str | Path | None = None,
            options: MonitorOptions | None = None, detector: Detector | None = None, predictor: Any = None,
            tagger_predictor: Any = None, emit: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Ingest a stream into `db`; returns a summary. `emit` receives each alert as a JSON line (default: stdout)."""
    options = options or MonitorOptions()
    detector = detector or options.detector()
    emit = emit or _print_line
    check_webhook(options.webhook)
    for name, value in (("--classifier", classifier), ("--input", input), ("--db", db)):
        if value is None and not (name == "--classifier" and predictor is not None):
            raise StepwiseError(f"{name} is required", fix="see `stepwise monitor --help`")
    if Path(db).is_dir():
        raise StepwiseError("--db is a directory", path=db, fix="give --db a file name, e.g. monitor.sqlite")
    check_output(db, "--db", FILE, inputs=[input])
    if input != "-" and not Path(input).is_file():  # before the model loads and the database is created
        raise StepwiseError("input file not found" if not Path(input).exists() else "input is not a file", path=input,
                            fix="check the path, or use --input - for stdin")
    if predictor is None:
        predictor = load_model(classifier, "label", "--classifier", options.backend, options.threads)
    if tagger is not None and tagger_predictor is None:
        tagger_predictor = load_model(tagger, "tags", "--tagger", options.backend, options.threads)
    signs = polarity(list(predictor.labels), options.labels)
    names = {label: options.labels.get(label, label) for label in predictor.labels}

    from stepwise.predictor import recheck_threads

    store = Store(db)
    outbox = Outbox(str(db), backoff=options.webhook_backoff).start() if options.webhook else None
    stats = {"lines": 0, "new_events": 0, "duplicates": 0, "new_rejects": 0, "new_alerts": 0}
    start = time.perf_counter()
    try:
        store.settle({"window": options.window, "labels": signs})
        for batch in read_lines(input, follow=options.follow, batch_size=options.batch_size,
                                stop_after_idle=options.stop_after_idle, poll=options.poll):
            stats["lines"] += len(batch)
            events, rejects = _parse(batch, stats)
            known = store.known_ids([e.id for e in events])
            fresh = [e for e in events if e.id not in known]
            stats["duplicates"] += len(events) - len(fresh)
            scored = _score(fresh, predictor, tagger_predictor, names, signs)
            recheck_threads(predictor)  # free (kernel counters): the stream runs for hours beside other jobs
            with store.transaction():
                stats["new_events"] += store.add(scored, options.window)
                stats["new_rejects"] += store.reject(rejects, input)
                alerts = detector.check(store, store.meta("watermark", -math.inf) - options.lateness,
                                        options.webhook)
            _emit(alerts, store, emit, stats)
        if not options.follow:  # the input is over: every window is closed
            with store.transaction():
                alerts = detector.check(store, math.inf, options.webhook)
            _emit(alerts, store, emit, stats)
        seconds = time.perf_counter() - start
        pending = outbox.stop(options.webhook_wait) if outbox else store.counts()["outbox_pending"]
        outbox = None
        return {"input": input, "db": str(db), **stats, "seconds": round(seconds, 3),
                "events_per_s": round(stats["new_events"] / seconds, 1) if seconds > 0 else None,
                "totals": store.counts(), "outbox_pending": pending}
    finally:
        if outbox is not None:
            outbox.stop(0.0)
        store.close()


def _parse(batch: list[tuple[int, str]], stats: dict[str, int]) -> tuple[list[Event], list[Reject]]:
    """Events (first of each id in the batch) and rejects."""
    events: dict[str, Event] = {}
    rejects = []
    for number, line in batch:
        item = parse_event(line, number)
        if isinstance(item, Reject):
            rejects.append(item)
        elif item.id in events:
            stats["duplicates"] += 1
        else:
            events[item.id] = item
    return list(events.values()), rejects


def _score(events: list[Event], predictor: Any, tagger: Any, names: dict[str, str],
           signs: dict[str, int]) -> list[Scored]:
    if not events:
        return []
    texts = [e.text for e in events]
    records = predictor.predict_records(texts)
    tagged = tagger.predict_records(texts) if tagger is not None else [None] * len(texts)
    out = []
    for event, record, tags in zip(events, records, tagged):
        probs = {names[k]: float(v) for k, v in record["probs"].items()}
        label = names[record["label"]]
        score = sum(p * signs[k] for k, p in probs.items())
        out.append(Scored(event, label, signs[label], score, probs, [ALL, *companies_of(event.text, tags)]))
    return out


def _emit(alerts: list[dict[str, Any]], store: Store, emit: Callable[[str], None], stats: dict[str, int]) -> None:
    for alert in alerts:
        emit(json.dumps(alert_record(alert, store)))
    stats["new_alerts"] += len(alerts)


def _print_line(line: str) -> None:
    print(line, flush=True)


def report(db: str | Path, out: str | Path, *, top: int = 12, examples: int = 5) -> dict[str, Any]:
    """`stepwise monitor report`: the self-contained HTML page of a monitor database."""
    import sqlite3

    from stepwise.monitor.report import build_report

    if top < 0:
        raise StepwiseError("--top must be 0 or more", fix="e.g. --top 12")
    try:
        return build_report(db, out, top=top, examples=examples)
    except (sqlite3.DatabaseError, json.JSONDecodeError) as err:  # pages cut off, a value that is not ours
        raise StepwiseError(f"the monitor database is damaged ({str(err)[:120]})", path=db,
                            fix="restore it from a copy, or rebuild it: run `stepwise monitor` on the stream "
                            "into a new --db") from None


def write_stream(path: str | Path, **kwargs: Any) -> dict[str, Any]:
    """The team-written demo stream (see `stepwise.monitor.stream`)."""
    from stepwise.monitor.stream import demo_stream

    rows, info = demo_stream(**kwargs)
    from stepwise.files import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
    return {"out": str(path), "events": len(rows), **info}

