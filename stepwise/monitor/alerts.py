"""Alerts: a change detector over closed windows, and the webhook outbox that delivers them.

The detector tests each closed window of a company for a surge of negative texts: k negative out of n
against the company's rolling baseline, its previous `baseline_windows` windows that raised no alert (so a
surge that lasts keeps alerting), whose negative share is p. The one-sided exact binomial tail
P(X >= k | n, p) gives the significance, reported as a normal z. It fires when z reaches `z` *and* the share
rose by at least `min_shift` (a large stream makes tiny moves significant) *and* the window holds `min_count`
events. With `direction="both"` a surge of positive texts alerts too.
It is stateless apart from the store, so a restarted monitor judges every window exactly as before.

The outbox is a table; a background thread POSTs each queued alert as JSON with retries and exponential
backoff. Ingestion only inserts rows, so a webhook that is down never slows the stream; what is not
delivered when a run ends stays queued and goes out on the next run.
"""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from statistics import NormalDist
from typing import Any

from stepwise.errors import StepwiseError
from stepwise.monitor.store import Store, Window


@dataclass
class Detector:
    window: float
    z: float = 4.0  # one-sided significance as a normal z: p = P(Z >= z), 4.0 → p ≈ 3e-5
    min_count: int = 10
    min_shift: float = 0.2  # the share must rise by at least this much over the baseline share
    baseline_windows: int = 24
    min_baseline: int = 30
    direction: str = "negative"  # or "both"

    def __post_init__(self) -> None:
        from dataclasses import asdict

        from stepwise.numbers import check_finite

        check_finite(asdict(self))
        checks = [(self.z > 0, "--z must be greater than 0"), (self.min_count >= 1, "--min-count must be at least 1"),
                  (0 <= self.min_shift < 1, "--min-shift must be in [0, 1)"),
                  (self.baseline_windows >= 1, "--baseline-windows must be at least 1"),
                  (self.direction in ("negative", "both"), "--alert-on must be negative or both")]
        for ok, problem in checks:
            if not ok:
                raise StepwiseError(problem, fix="see `stepwise monitor --help`")

    def judge(self, current: Window, baseline: list[Window]) -> dict[str, Any] | None:
        """An alert for `current` against its baseline windows, or None."""
        n_b = sum(w.n for w in baseline)
        if current.n < self.min_count or n_b < self.min_baseline:
            return None
        sides = [("negative", current.negative, sum(w.negative for w in baseline))]
        if self.direction == "both":
            sides.append(("positive", current.positive, sum(w.positive for w in baseline)))
        for direction, count, base in sides:
            rate = (base + 1) / (n_b + 2)  # the baseline share, smoothed: never 0 or 1
            share = count / current.n
            if share - rate < self.min_shift:
                continue
            p = binomial_tail(count, current.n, rate)
            z = -NormalDist().inv_cdf(min(max(p, 1e-300), 0.5))  # p > 0.5 is no surge: z 0
            if z < self.z:
                continue
            mean_b = sum(w.score_sum for w in baseline) / n_b
            return {"company": current.company, "window_start": current.start,
                    "window_end": current.start + self.window, "direction": direction, "n": current.n,
                    "share": round(share, 4), "baseline_share": round(rate, 4), "baseline_n": n_b, "z": round(z, 3),
                    "p_value": p, "mean": round(current.mean, 6), "baseline_mean": round(mean_b, 6),
                    "created": time.time()}
        return None

    def check(self, store: Store, closed_before: float, webhook: str | None = None) -> list[dict[str, Any]]:
        """Judge every window closed before `closed_before` not judged yet (inside the caller's transaction)."""
        windows = store.unchecked(closed_before)
        alerts = []
        for current in windows:
            since = current.start - self.baseline_windows * self.window
            alerted = store.alerted(current.company, since, current.start)  # a turn is not the norm
            baseline = [w for w in store.windows(current.company, since, current.start) if w.start not in alerted]
            alert = self.judge(current, baseline)
            if alert is not None:
                alert_id = store.add_alert(alert, webhook)
                if alert_id is not None:
                    alerts.append({"id": alert_id, **alert})
        store.mark_checked(windows)
        return alerts


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed in log space (exact for the window sizes seen here)."""
    if k <= 0:
        return 1.0
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p) + (n - i) *
            math.log1p(-p) for i in range(k, n + 1)]
    top = max(logs)
    return min(1.0, math.exp(top) * sum(math.exp(v - top) for v in logs))


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def alert_record(alert: dict[str, Any], store: Store, examples: int = 3) -> dict[str, Any]:
    """An alert as printed and POSTed: times in ISO 8601 and the window's texts most in the alert's direction."""
    texts = store.events_in(alert["company"], alert["window_start"], examples, alert["direction"])
    return {"alert_id": alert["id"], "company": alert["company"], "direction": alert["direction"],
            "window_start": iso(alert["window_start"]), "window_end": iso(alert["window_end"]),
            "n": alert["n"], "share": alert["share"], "baseline_share": alert["baseline_share"],
            "baseline_n": alert["baseline_n"], "z": alert["z"], "p_value": alert["p_value"], "mean": alert["mean"],
            "baseline_mean": alert["baseline_mean"],
            "examples": [{"id": t["id"], "text": t["text"], "score": round(t["score"], 4)} for t in texts]}


class Outbox:
    """Delivers queued alerts to their webhook URL from a background thread with its own connection."""

    def __init__(self, db: str, *, timeout: float = 5.0, backoff: float = 1.0, max_backoff: float = 60.0,
                 poll: float = 0.1) -> None:
        self.db, self.timeout, self.backoff, self.max_backoff, self.poll = db, timeout, backoff, max_backoff, poll
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.delivered = 0
        self.failures = 0

    def start(self) -> Outbox:
        self._thread = threading.Thread(target=self._run, name="stepwise-webhook", daemon=True)
        self._thread.start()
        return self

    def stop(self, wait: float = 0.0) -> int:
        """Give pending deliveries up to `wait` seconds, stop the thread; returns how many are still queued."""
        store = Store(self.db)
        try:
            deadline = time.monotonic() + wait
            while self._pending(store) and time.monotonic() < deadline and self._thread and self._thread.is_alive():
                time.sleep(self.poll)
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            return self._pending(store)
        finally:
            store.close()

    @staticmethod
    def _pending(store: Store) -> int:
        return store.conn.execute("SELECT COUNT(*) FROM outbox WHERE delivered IS NULL").fetchone()[0]

    def _run(self) -> None:
        store = Store(self.db)
        try:
            with store.transaction():  # a new run tries what earlier runs left queued at once
                store.conn.execute("UPDATE outbox SET next_try = ? WHERE delivered IS NULL", (time.time(),))
            while not self._stop.is_set():
                if not self.deliver_due(store):
                    self._stop.wait(self.poll)
        finally:
            store.close()

    def deliver_due(self, store: Store) -> int:
        """One attempt at every queued alert whose time has come; returns how many were attempted."""
        rows = store.conn.execute("SELECT o.alert_id, o.url, o.attempts, a.* FROM outbox o JOIN alerts a "
                                  "ON a.id = o.alert_id WHERE o.delivered IS NULL AND o.next_try <= ? "
                                  "ORDER BY o.alert_id", (time.time(),))
        names = [d[0] for d in rows.description]
        due = [dict(zip(names, r)) for r in rows.fetchall()]
        for row in due:
            if self._stop.is_set():
                break
            body = json.dumps(alert_record(row, store)).encode("utf-8")
            error = self._post(row["url"], body, row["alert_id"])
            with store.transaction():
                if error is None:
                    self.delivered += 1
                    store.conn.execute("UPDATE outbox SET delivered = ?, attempts = attempts + 1, last_error = NULL "
                                       "WHERE alert_id = ?", (time.time(), row["alert_id"]))
                else:
                    self.failures += 1
                    delay = min(self.backoff * 2 ** row["attempts"], self.max_backoff)
                    store.conn.execute("UPDATE outbox SET attempts = attempts + 1, next_try = ?, last_error = ? "
                                       "WHERE alert_id = ?", (time.time() + delay, error[:500], row["alert_id"]))
        return len(due)

    def _post(self, url: str, body: bytes, alert_id: int) -> str | None:
        request = urllib.request.Request(url, data=body, method="POST", headers={
            "Content-Type": "application/json", "Idempotency-Key": f"stepwise-alert-{alert_id}",
            "User-Agent": "stepwise-monitor"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
            return None
        except urllib.error.HTTPError as err:
            return f"HTTP {err.code}"
        except (urllib.error.URLError, OSError, ValueError) as err:
            return f"{type(err).__name__}: {err}"
