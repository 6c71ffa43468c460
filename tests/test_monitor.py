"""The sentiment monitor: events, store, detector, webhook outbox, report — on a tiny classifier trained on the
demo stream's own style, real SQLite, a real local HTTP server and (where installed) a real headless Chromium."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import stepwise
from stepwise.cli import main
from stepwise.monitor.alerts import Detector, binomial_tail
from stepwise.monitor.companies import ALL, cashtags, companies_of
from stepwise.monitor.events import Event, Reject, parse_duration, parse_event
from stepwise.monitor.store import Window, window_start
from stepwise.monitor.stream import demo_stream
from stepwise.recipes.monitor import MonitorOptions, monitor
from tests.conftest import tiny_options, toy_ner, write_conll, write_tsv

ROOT = Path(__file__).resolve().parents[1]
T0 = 1772409600.0  # 2026-03-02T00:00:00Z, a window boundary for 1h windows


@pytest.fixture(scope="module")
def run_dir(tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny classifier (negative/neutral/positive) trained on demo-stream headlines of another seed."""
    tmp = tmp_path_factory.mktemp("monitor-run")
    train, _ = demo_stream(days=1, per_hour=3, seed=11, surge=None)
    dev, _ = demo_stream(days=1, per_hour=1, seed=12, surge=None)
    files = {"train": write_tsv(tmp / "train.tsv", [(r["text"], r["gold"]) for r in train]),
             "dev": write_tsv(tmp / "dev.tsv", [(r["text"], r["gold"]) for r in dev]),
             "test": write_tsv(tmp / "test.tsv", [(r["text"], r["gold"]) for r in dev])}
    run = stepwise.train(**tiny_options(tiny_model, files, tmp / "run", epochs=4))
    assert run.results["test"]["accuracy"] > 0.9  # the detector tests below need a classifier that works
    return run.path


@pytest.fixture(scope="module")
def predictor(run_dir: Path) -> Any:
    return stepwise.load(run_dir, precision="fp32")


def write_events(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def query(db: Path, sql: str, *params: Any) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


# --- events and companies -------------------------------------------------------------------------------
def test_parse_event_accepts_good_lines_and_names_what_is_wrong() -> None:
    good = parse_event(json.dumps({"id": 7, "time": "2026-03-02T01:30:00Z", "text": "$ACME up", "source": "x"}), 1)
    assert good == Event("7", T0 + 5400, "$ACME up", "x", 1)
    assert parse_event('{"id": "a", "time": "2026-03-02T03:30:00+02:00", "text": "t"}', 2).time == T0 + 5400
    assert parse_event('{"id": "a", "time": "2026-03-02 01:30:00", "text": "t"}', 2).time == T0 + 5400  # naive: UTC
    assert parse_event(f'{{"id": "a", "time": {T0 + 1.5}, "text": "t"}}', 3).time == T0 + 1.5
    bad = {'{"id": 1, "time": "2026-03-02T01:00:00Z", "text": "  "}': "no text",
           '{"id": 1, "time": "2026-03-02T01:00:00Z"}': "no text",
           '{"id": 1, "text": "hello"}': "no time",
           '{"id": 1, "time": "yesterday", "text": "hello"}': "bad time",
           f'{{"id": 1, "time": {T0 * 1000}, "text": "hello"}}': "bad time",  # milliseconds
           '{"id": 1, "time": true, "text": "hello"}': "bad time",
           '{"time": "2026-03-02T01:00:00Z", "text": "hello"}': "no id",
           '{"id": "", "time": "2026-03-02T01:00:00Z", "text": "hello"}': "no id",
           '{"id": 1, "time": "2026-03-02T01:00:00Z", "text": "hel': "not JSON",
           '["a", "b"]': "not a JSON object"}
    for line, reason in bad.items():
        item = parse_event(line, 9)
        assert isinstance(item, Reject) and item.reason.startswith(reason) and item.line == 9, line
    assert parse_duration("1h") == 3600 and parse_duration("15m") == 900 and parse_duration("90") == 90
    with pytest.raises(stepwise.StepwiseError):
        parse_duration("an hour")


def test_cashtags_and_tagger_organisations() -> None:
    assert cashtags("$aapl rallies; $AAPL, $BRK.B and $tsla. Costs $100, not a$X") == ["AAPL", "BRK.B", "TSLA"]
    tagged = {"entities": [{"type": "ORG", "text": "Acme Corp"}, {"type": "PER", "text": "John"},
                           {"type": "ORG", "text": "aapl"}]}
    assert companies_of("$AAPL falls as Acme Corp sues", tagged) == ["AAPL", "Acme Corp"]


def test_detector_judges_the_negative_share_against_the_rolling_baseline() -> None:
    detector = Detector(3600, z=4, min_count=10, min_shift=0.2, baseline_windows=3, min_baseline=30)

    def window(hour: int, negative: int, neutral: int, positive: int) -> Window:
        return Window("X", T0 + hour * 3600, negative + neutral + positive, negative, neutral, positive,
                      float(positive - negative))

    flat = [window(h, 3, 10, 7) for h in range(3)]  # 15% negative, 60 events
    assert detector.judge(window(3, 4, 10, 6), flat) is None
    assert detector.judge(window(3, 7, 8, 5), flat) is None  # 35% negative: z 1.9, not significant
    surge = detector.judge(window(3, 12, 6, 2), flat)  # 60% negative
    assert surge is not None and surge["direction"] == "negative" and surge["n"] == 20 and surge["share"] == 0.6
    assert surge["baseline_share"] == round(10 / 62, 4) and surge["baseline_n"] == 60
    assert surge["p_value"] == pytest.approx(binomial_tail(12, 20, 10 / 62)) and surge["z"] > 4
    assert surge["mean"] == pytest.approx(-0.5) and surge["baseline_mean"] == pytest.approx(12 / 60)
    assert detector.judge(window(3, 9, 0, 0), flat) is None  # fewer than --min-count events
    assert detector.judge(window(3, 12, 6, 2), flat[:1]) is None  # a baseline of 20 < 30 events
    assert detector.judge(window(3, 0, 2, 18), flat) is None  # a positive surge: not by default
    assert Detector(3600, direction="both").judge(window(3, 0, 2, 18), flat)["direction"] == "positive"
    big = [Window("X", T0 + h * 3600, 10000, 1500, 6000, 2500, 1000.0) for h in range(3)]
    # significant (z > 8) but only 3 points more negative: below --min-shift
    assert detector.judge(Window("X", T0 + 3 * 3600, 10000, 1800, 6000, 2200, 400.0), big) is None
    # the exact tail against a direct sum
    assert binomial_tail(8, 16, 0.15) == pytest.approx(sum(math.comb(16, i) * 0.15 ** i * 0.85 ** (16 - i)
                                                           for i in range(8, 17)), rel=1e-9)
    assert binomial_tail(0, 5, 0.3) == 1.0


def test_store_aggregates_an_event_once_even_when_added_twice(tmp_path: Path) -> None:
    from stepwise.monitor.store import Scored, Store

    store = Store(tmp_path / "s.sqlite")
    store.settle({"window": 3600.0})
    items = [Scored(Event("a", T0 + 10, "$X down", None, 1), "negative", -1, -0.8, {}, [ALL, "X"]),
             Scored(Event("b", T0 + 20, "$X $Y up", None, 2), "positive", 1, 0.6, {}, [ALL, "X", "Y", "X"])]
    for _ in range(2):  # a second writer, or a restart that did not filter known ids
        with store.transaction():
            added = store.add(items, 3600.0)
    assert added == 0 and store.meta("watermark") == T0 + 20
    rows = query(tmp_path / "s.sqlite", "SELECT company, n, negative, positive, round(score_sum, 6) FROM aggregates "
                 "ORDER BY company")
    assert rows == [(ALL, 2, 1, 1, -0.2), ("X", 2, 1, 1, -0.2), ("Y", 1, 0, 1, 0.6)]
    with pytest.raises(RuntimeError), store.transaction():  # a failed batch leaves nothing behind
        store.add([Scored(Event("c", T0 + 30, "t", None, 3), "neutral", 0, 0.0, {}, [ALL])], 3600.0)
        raise RuntimeError
    assert store.counts()["events"] == 2
    store.close()


# --- ingestion ------------------------------------------------------------------------------------------
def hand_stream() -> list[Any]:
    rows = [{"id": "e1", "time": "2026-03-02T00:10:00Z", "text": "$ACMR Acme Robotics net profit falls 15 percent"},
            {"id": "e2", "time": "2026-03-02T00:20:00Z", "text": "$ACMR Acme Robotics shares hit all-time high"},
            {"id": "e3", "time": "2026-03-02T00:59:59Z", "text": "$VLME Vellum Energy board to meet next week"},
            "this line is not JSON",
            {"id": "e4", "time": "2026-03-02T01:00:00Z", "text": "$ACMR and $VLME: Vellum Energy cuts full-year "
             "outlook as demand weakens"},
            {"id": "e5", "time": "2026-03-02T01:30:00Z", "text": ""},
            {"id": "e6", "time": "not a time", "text": "$ACMR Acme Robotics lifts dividend"},
            "",
            {"id": "e2", "time": "2026-03-02T01:40:00Z", "text": "a repeated id is ignored"},
            {"id": "e7", "time": T0 + 2 * 3600 + 5, "text": "Investors cheer $vlme surprise earnings beat",
             "source": "wire"}]
    return rows


def test_aggregates_per_company_and_window_on_a_hand_made_stream(run_dir: Path, predictor: Any, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    stream = write_events(tmp_path / "events.jsonl", hand_stream())
    db = tmp_path / "m.sqlite"
    assert main(["monitor", "--classifier", str(run_dir), "--input", str(stream), "--db", str(db), "--window", "1h",
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert summary["new_events"] == 5 and summary["new_rejects"] == 3 and summary["duplicates"] == 1
    assert query(db, "PRAGMA journal_mode")[0][0] == "wal"
    events = {r["id"]: r for r in hand_stream() if isinstance(r, dict) and r["id"] not in ("e5", "e6")}
    events["e2"] = hand_stream()[1]  # the first e2 wins
    records = dict(zip(events, predictor.predict_records([e["text"] for e in events.values()])))
    expected: dict[tuple[str, float], Counter] = {}
    for eid, event in events.items():
        t = parse_event(json.dumps(event), 1).time
        label = records[eid]["label"]
        for company in [ALL, *cashtags(event["text"])]:
            key = (company, window_start(t, 3600))
            expected.setdefault(key, Counter())
            expected[key].update({"n": 1, label: 1})
            expected[key]["score"] += records[eid]["probs"]["positive"] - records[eid]["probs"]["negative"]
    rows = query(db, "SELECT company, window_start, n, negative, neutral, positive, score_sum FROM aggregates")
    assert {(c, w) for c, w, *_ in rows} == set(expected) == {
        (ALL, T0), (ALL, T0 + 3600), (ALL, T0 + 7200), ("ACMR", T0), ("ACMR", T0 + 3600), ("VLME", T0),
        ("VLME", T0 + 3600), ("VLME", T0 + 7200)}
    for company, start, n, neg, neu, pos, score in rows:
        want = expected[(company, start)]
        assert (n, neg, neu, pos) == (want["n"], want["negative"], want["neutral"], want["positive"]), company
        assert score == pytest.approx(want["score"], abs=1e-4)
    rejects = query(db, "SELECT line, reason FROM rejects ORDER BY line")
    assert [(line, reason.split(" (")[0]) for line, reason in rejects] == [(4, "not JSON"), (6, "no text"),
                                                                          (7, "bad time")]
    assert query(db, "SELECT source, label FROM events WHERE id = 'e7'")[0] == ("wire", records["e7"]["label"])
    # run again: nothing is counted twice, nothing rejected twice
    assert main(["monitor", "--classifier", str(run_dir), "--input", str(stream), "--db", str(db), "--json"]) == 0
    again = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert again["new_events"] == 0 and again["new_rejects"] == 0 and again["duplicates"] == 6
    assert query(db, "SELECT company, window_start, n, negative, neutral, positive, score_sum FROM aggregates") == rows
    assert query(db, "SELECT COUNT(*) FROM rejects")[0][0] == 3


def table_dump(db: Path) -> dict[str, list[tuple]]:
    return {"aggregates": query(db, "SELECT company, window_start, n, negative, neutral, positive, "
                                "round(score_sum, 5), checked FROM aggregates ORDER BY 1, 2"),
            "mentions": query(db, "SELECT company, window_start, event_id FROM mentions ORDER BY 1, 2, 3"),
            "events": query(db, "SELECT id, time, label FROM events ORDER BY id"),
            "alerts": query(db, "SELECT company, window_start, direction, n FROM alerts ORDER BY 1, 2")}


def test_kill_9_mid_stream_then_restart_counts_every_event_once(run_dir: Path, predictor: Any,
                                                                 tmp_path: Path) -> None:
    rows, _ = demo_stream(days=2, per_hour=4, seed=3, surge="ACMR", surge_hour=30)
    stream = write_events(tmp_path / "events.jsonl", rows[:len(rows) // 2])
    db = tmp_path / "killed.sqlite"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "stepwise.cli", "monitor", "--classifier", str(run_dir), "--input", str(stream),
           "--db", str(db), "--batch-size", "4", "--follow", "--threads", "1"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not db.exists() or _count(db) < 20):
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.05)
        with stream.open("a") as f:  # more lines arrive while it runs; then it dies mid-batch
            f.write("".join(json.dumps(r) + "\n" for r in rows[len(rows) // 2:]))
        time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    stored = _count(db)
    assert 20 <= stored < len(rows)  # killed mid-stream
    summary = monitor(run_dir, str(stream), db, predictor=predictor, emit=lambda line: None)
    assert summary["new_events"] == len(rows) - stored and summary["duplicates"] == stored
    clean = tmp_path / "clean.sqlite"
    monitor(run_dir, str(stream), clean, predictor=predictor, emit=lambda line: None)
    killed, fresh = table_dump(db), table_dump(clean)
    assert len(killed["events"]) == len(rows)
    assert killed == fresh  # same events, mentions, aggregates and alerts as a run that was never killed
    assert sum(n for c, _, n, *_ in killed["aggregates"] if c == ALL) == len(rows)


def _count(db: Path) -> int:
    try:
        return query(db, "SELECT COUNT(*) FROM events")[0][0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def test_follow_picks_up_appended_lines_and_rotation_and_stops_when_idle(run_dir: Path, predictor: Any,
                                                                         tmp_path: Path) -> None:
    rows, _ = demo_stream(days=1, per_hour=1, seed=5, surge=None)
    stream = write_events(tmp_path / "grow.jsonl", rows[:10])
    db = tmp_path / "follow.sqlite"
    options = MonitorOptions(follow=True, stop_after_idle=3.0, poll=0.05, batch_size=8)
    result: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: result.update(monitor(run_dir, str(stream), db, predictor=predictor,
                                                                   options=options, emit=lambda line: None)))
    worker.start()
    deadline = time.monotonic() + 20
    while _count(db) < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _count(db) == 10 and worker.is_alive()
    with stream.open("a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows[10:20]))
        last = json.dumps(rows[20])
        f.write(last[:15])  # a writer caught mid-line: the half line waits for its end
        f.flush()
        time.sleep(0.5)
        f.write(last[15:] + "\n")
        f.write("{broken\n")
    time.sleep(0.5)
    stream.rename(tmp_path / "grow.jsonl.1")  # rotated: a new file, which repeats one event
    write_events(stream, [rows[0], *rows[21:24]])
    worker.join(30)
    assert not worker.is_alive()
    assert result["new_events"] == 24 and result["new_rejects"] == 1 and result["duplicates"] == 1
    assert _count(db) == 24 and query(db, "SELECT reason FROM rejects") == [("not JSON",)]


def test_tagger_organisations_name_companies(tiny_model: str, run_dir: Path, predictor: Any, tmp_path: Path) -> None:
    files = {"train": write_conll(tmp_path / "train.conll", toy_ner(200, 1)),
             "dev": write_conll(tmp_path / "dev.conll", toy_ner(40, 2))}
    tagger_run = stepwise.train(**tiny_options(tiny_model, {**files, "test": files["dev"]}, tmp_path / "ner",
                                               task="tag", epochs=8)).path
    texts = [" ".join(words) for words, _ in toy_ner(30, 7)]
    rows = [{"id": i, "time": T0 + 60 * i, "text": f"$ZETA {t}" if i % 3 == 0 else t} for i, t in enumerate(texts)]
    db = tmp_path / "tagged.sqlite"
    monitor(run_dir, str(write_events(tmp_path / "e.jsonl", rows)), db, tagger=tagger_run, predictor=predictor,
            emit=lambda line: None)
    tagger = stepwise.load(tagger_run)
    expected = {(str(r["id"]), c) for r, tags in zip(rows, tagger.predict_records([r["text"] for r in rows]))
                for c in [ALL, *companies_of(r["text"], tags)]}
    stored = set(query(db, "SELECT event_id, company FROM mentions"))
    assert stored == expected
    assert {c for _, c in stored} & {"Acme Corp", "Reuters", "United Nations"}  # the tagger found organisations
    assert ("0", "ZETA") in stored
    with pytest.raises(stepwise.StepwiseError, match="needs a tag run"):
        monitor(run_dir, str(tmp_path / "e.jsonl"), db, tagger=run_dir, predictor=predictor)


# --- alerts ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def surge_db(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], list[dict]]:
    tmp = tmp_path_factory.mktemp("surge")
    rows, info = demo_stream(days=3, per_hour=6, seed=1, surge="ACMR", surge_hour=50)
    stream = write_events(tmp / "surge.jsonl", rows)
    db = tmp / "surge.sqlite"
    out = tmp / "alerts.jsonl"
    code = subprocess.run([sys.executable, "-m", "stepwise.cli", "monitor", "--classifier", str(run_dir), "--input",
                           str(stream), "--db", str(db), "--window", "1h", "--min-count", "5"],
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)},
                          stdout=out.open("w"), stderr=subprocess.PIPE, timeout=300)
    assert code.returncode == 0, code.stderr.decode()
    return db, info, [json.loads(line) for line in out.read_text().splitlines()]


def test_alert_on_the_injected_surge_only(surge_db: tuple[Path, dict[str, Any], list[dict]]) -> None:
    db, info, printed = surge_db
    alerts = query(db, "SELECT company, window_start, direction FROM alerts")
    companies = {c for c, _, _ in alerts}
    assert companies <= {"ACMR", ALL} and "ACMR" in companies
    first = min(w for c, w, _ in alerts if c == "ACMR")
    assert info["surge_start"] <= first < info["surge_start"] + 2 * 3600  # within 2 windows of the surge
    assert len(printed) == len(alerts) and {a["company"] for a in printed} == companies
    surge_alert = next(a for a in printed if a["company"] == "ACMR")
    assert surge_alert["direction"] == "negative" and surge_alert["z"] >= 4 and surge_alert["share"] >= 0.5
    assert surge_alert["window_start"].startswith("2026-03-04T02:")  # hour 50
    assert len(surge_alert["examples"]) == 3 and all("ACMR" in t["text"] for t in surge_alert["examples"])


def test_no_alert_on_a_flat_stream(run_dir: Path, predictor: Any, tmp_path: Path) -> None:
    rows, _ = demo_stream(days=2, per_hour=6, seed=1, surge=None)
    printed: list[str] = []
    summary = monitor(run_dir, str(write_events(tmp_path / "flat.jsonl", rows)), tmp_path / "flat.sqlite",
                      predictor=predictor, detector=Detector(3600, min_count=5), emit=printed.append)
    assert summary["new_events"] == len(rows) and summary["new_alerts"] == 0 and printed == []
    assert query(tmp_path / "flat.sqlite", "SELECT COUNT(*) FROM aggregates WHERE checked = 0")[0][0] == 0


# --- webhook --------------------------------------------------------------------------------------------
class Receiver:
    """A real HTTP server on 127.0.0.1 that answers 500 to the first `fail` requests (or while `down`)."""

    def __init__(self, fail: int = 0) -> None:
        self.fail, self.down, self.received, self.attempts = fail, False, [], 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.attempts += 1
                if receiver.down or receiver.attempts <= receiver.fail:
                    self.send_response(500)
                else:
                    receiver.received.append((self.headers["Idempotency-Key"], body))
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_webhook_retries_until_delivered_and_never_blocks_ingestion(run_dir: Path, predictor: Any,
                                                                    tmp_path: Path) -> None:
    rows, _ = demo_stream(days=2, per_hour=4, seed=2, surge="ACMR", surge_hour=30)
    stream = write_events(tmp_path / "surge.jsonl", rows)
    detector = Detector(3600, min_count=5)
    # 1. the receiver is down for the whole run: every event is stored anyway, the alerts stay queued
    with Receiver() as receiver:
        receiver.down = True
        db = tmp_path / "hook.sqlite"
        options = MonitorOptions(webhook=receiver.url, webhook_wait=0.5, webhook_backoff=0.05)
        summary = monitor(run_dir, str(stream), db, predictor=predictor, detector=detector, options=options,
                          emit=lambda line: None)
        assert summary["new_events"] == len(rows) and summary["new_alerts"] >= 1
        assert receiver.attempts >= 1 and receiver.received == []
        assert summary["outbox_pending"] == summary["new_alerts"]
        assert {e for (e,) in query(db, "SELECT last_error FROM outbox")} == {"HTTP 500"}
        # 2. it is back: the next run (nothing new to ingest) delivers every queued alert, once
        receiver.down = False
        options.webhook_wait = 10
        again = monitor(run_dir, str(stream), db, predictor=predictor, detector=detector, options=options,
                        emit=lambda line: None)
        assert again["new_events"] == 0 and again["outbox_pending"] == 0
    alert_ids = {i for (i,) in query(db, "SELECT id FROM alerts")}
    assert sorted(key for key, _ in receiver.received) == sorted(f"stepwise-alert-{i}" for i in alert_ids)
    assert all(body["company"] and body["examples"] for _, body in receiver.received)
    # 3. within one run: 500 twice, then accepted after the backoff
    with Receiver(fail=2) as flaky:
        db2 = tmp_path / "flaky.sqlite"
        options = MonitorOptions(webhook=flaky.url, webhook_wait=10, webhook_backoff=0.05)
        summary = monitor(run_dir, str(stream), db2, predictor=predictor, detector=detector, options=options,
                          emit=lambda line: None)
    assert summary["outbox_pending"] == 0 and len(flaky.received) == summary["new_alerts"]
    assert flaky.attempts == summary["new_alerts"] + 2
    assert max(a for (a,) in query(db2, "SELECT attempts FROM outbox")) >= 2


# --- report ---------------------------------------------------------------------------------------------
def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        if path := shutil.which(name):
            return path
    return None


def test_report_renders_in_headless_chromium(surge_db: tuple[Path, dict[str, Any], list[dict]],
                                             tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    db, _, _ = surge_db
    out = tmp_path / "report.html"
    assert main(["monitor", "report", "--db", str(db), "--out", str(out)]) == 0
    assert "written to" in capsys.readouterr().out
    html = out.read_text()
    companies = [ALL, "ACMR", "VLME", "CRVD", "KSTF", "QLTC"]
    for company in companies:
        assert f'alt="sentiment and volume of {"all events" if company == ALL else company}" data-company="{company}" '\
            'src="data:image/png;base64,' in html
    assert 'data-alert="' in html and "most negative texts" in html and "http" not in html.split("<body>")[1]
    browser = find_chromium()
    if browser is None:
        pytest.skip("no Chromium found (apt-get install chromium): the report was checked as HTML only")
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    dom = subprocess.run([*flags, "--dump-dom", out.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert f'data-plots-loaded="{len(companies)}/{len(companies)}"' in dom  # every plot decoded by the browser
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1200,2000", out.as_uri()], capture_output=True,
                   timeout=120)
    import numpy as np
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[0] == 2000 and pixels.shape[1] == 1200
    assert pixels[..., :3].std() > 0.05  # not a blank page
    red = np.array([0xc0, 0x39, 0x2b]) / 255
    assert (np.abs(pixels[..., :3] - red).max(axis=-1) < 0.02).sum() > 100  # the alert's red border is on screen


# --- errors ---------------------------------------------------------------------------------------------
def test_bad_options_are_one_line_errors(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    stream = write_events(tmp_path / "e.jsonl", hand_stream())
    base = ["monitor", "--classifier", str(run_dir), "--input", str(stream), "--db", str(tmp_path / "m.sqlite")]
    cases = [(base + ["--window", "soon"], "--window 'soon' is not a duration"),
             (base + ["--webhook", "ftp://x"], "is not an http(s) URL"),
             (base + ["--labels", "0=bearish"], "does not have"),
             (["monitor", "--classifier", str(tmp_path / "nope"), "--input", str(stream), "--db", "x.sqlite"], "nope"),
             (base[:3] + ["--input", str(tmp_path / "missing.jsonl"), "--db", str(tmp_path / "m.sqlite")],
              "input file not found"),
             (["monitor", "--input", str(stream), "--db", "x.sqlite"], "--classifier is required"),
             (["monitor", "report", "--db", str(tmp_path / "none.sqlite"), "--out", str(tmp_path / "r.html")],
              "no monitor database")]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "m.sqlite").exists()  # nothing was written by a refused command
    assert main(base + ["--window", "1h"]) == 0
    capsys.readouterr()
    assert main(base + ["--window", "15m"]) == 2  # the database was built with 1h windows
    assert "this database was built with window 3600.0" in capsys.readouterr().err
