"""The monitor's report: one self-contained HTML page (plots as inline PNG) built from the store.

Per company: mean sentiment per window with its alerts marked, and volume per window split into
negative / neutral / positive. Then every alert with the most negative texts of its window, and the
rejected input lines by reason.
"""

from __future__ import annotations

import base64
import io
from html import escape
from pathlib import Path
from typing import Any

from stepwise.files import atomic_write_text
from stepwise.monitor.alerts import iso
from stepwise.monitor.companies import ALL
from stepwise.monitor.store import Store, Window

COLORS = {"negative": "#c0392b", "neutral": "#b0b7bf", "positive": "#27ae60", "line": "#1f4e79"}
STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1100px; color: #222; padding: 0 16px; }
h1 { font-size: 24px; margin-bottom: 4px; } h2 { margin-top: 32px; border-bottom: 1px solid #ddd; }
.summary { display: flex; gap: 16px; flex-wrap: wrap; margin: 16px 0; }
.summary div { background: #f4f6f8; border-radius: 6px; padding: 10px 16px; }
.summary b { display: block; font-size: 22px; }
section.company { margin: 18px 0 28px; } section.company h3 { margin-bottom: 4px; }
section.company img { width: 100%; max-width: 1000px; border: 1px solid #eee; }
table { border-collapse: collapse; margin: 8px 0 16px; } td, th { border-bottom: 1px solid #e3e3e3; padding: 4px 10px;
  text-align: left; vertical-align: top; }
.alert { border-left: 4px solid #c0392b; padding: 4px 12px; margin: 12px 0; background: #fdf2f1; }
.alert.positive { border-color: #27ae60; background: #f0faf3; }
.muted { color: #777; } .score { font-variant-numeric: tabular-nums; white-space: nowrap; }
"""
# Counts the plots the browser decoded (checked by the test in a real headless browser).
SCRIPT = """
window.addEventListener('load', function () {
  var imgs = document.querySelectorAll('img.plot'), ok = 0;
  imgs.forEach(function (i) { if (i.complete && i.naturalWidth > 0) ok++; });
  document.body.setAttribute('data-plots-loaded', ok + '/' + imgs.length);
});
"""


def build_report(db: str | Path, out: str | Path, *, top: int = 12, examples: int = 5) -> dict[str, Any]:
    """Write the HTML report of a monitor database; returns what it shows."""
    store = Store(db, create=False)
    try:
        window = store.meta("window")
        if window is None:
            from stepwise.errors import StepwiseError

            raise StepwiseError("this monitor database holds no events yet", path=db,
                                fix="run `stepwise monitor ... --db` on some events first")
        alerts = store.alerts()
        volume = store.companies()
        alerted = {a["company"] for a in alerts}
        shown = [c for c, _ in volume if c == ALL] + [c for c, _ in volume if c != ALL][:top]
        shown += [c for c, _ in volume if c in alerted and c not in shown]
        sections = [_company_section(c, store.windows(c), [a for a in alerts if a["company"] == c], window)
                    for c in shown]
        alert_blocks = [_alert_block(a, store.events_in(a["company"], a["window_start"], examples, a["direction"]))
                        for a in alerts]
        counts = store.counts()
        span = store.conn.execute("SELECT MIN(time), MAX(time) FROM events").fetchone()
        html = _page(counts, span, window, sections, alert_blocks, store.reject_reasons(), len(volume) - len(shown))
    finally:
        store.close()
    atomic_write_text(out, html)
    return {"out": str(out), "companies_shown": shown, "alerts": len(alerts), **counts}


def _page(counts: dict[str, int], span: tuple[Any, Any], window: float, sections: list[str], alert_blocks: list[str],
          reasons: list[tuple[str, int]], hidden: int) -> str:
    start, end = (iso(t) if t is not None else "–" for t in span)
    tiles = "".join(f"<div><b>{v}</b>{escape(k)}</div>" for k, v in (
        ("events", counts["events"]), ("companies", counts["companies"] - 1 if counts["companies"] else 0),
        ("alerts", counts["alerts"]), ("rejected lines", counts["rejects"])))
    rejects = ("<table><tr><th>reason</th><th>lines</th></tr>" + "".join(
        f"<tr><td>{escape(r)}</td><td>{n}</td></tr>" for r, n in reasons) + "</table>") if reasons else \
        "<p class='muted'>none</p>"
    more = f"<p class='muted'>{hidden} smaller companies not shown (--top).</p>" if hidden > 0 else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>stepwise monitor report</title>
<style>{STYLE}</style><script>{SCRIPT}</script></head>
<body>
<h1>Sentiment monitor</h1>
<p class="muted">{escape(start)} to {escape(end)} · windows of {_duration(window)} · score = P(positive) − P(negative)
per event, averaged per window</p>
<div class="summary">{tiles}</div>
<h2 id="alerts">Alerts</h2>
{''.join(alert_blocks) or "<p class='muted'>no alerts</p>"}
<h2 id="companies">Sentiment and volume per company</h2>
{''.join(sections)}{more}
<h2 id="rejects">Rejected input lines</h2>
{rejects}
</body></html>
"""


def _company_section(company: str, windows: list[Window], alerts: list[dict[str, Any]], window: float) -> str:
    name = "all events" if company == ALL else company
    total = sum(w.n for w in windows)
    png = _plot(name, windows, alerts, window)
    return (f'<section class="company" data-company="{escape(company)}"><h3>{escape(name)}</h3>'
            f'<p class="muted">{total} events in {len(windows)} windows · {len(alerts)} alerts</p>'
            f'<img class="plot" alt="sentiment and volume of {escape(name)}" data-company="{escape(company)}" '
            f'src="data:image/png;base64,{png}"></section>')


def _alert_block(alert: dict[str, Any], texts: list[dict[str, Any]]) -> str:
    name = "all events" if alert["company"] == ALL else alert["company"]
    rows = "".join(f"<tr><td class='score'>{t['score']:+.2f}</td><td>{escape(t['label'])}</td>"
                   f"<td>{escape(t['text'])}</td></tr>" for t in texts)
    mean = f"mean sentiment {alert['mean']:+.2f} (baseline {alert['baseline_mean']:+.2f})"
    return (f'<div class="alert {escape(alert["direction"])}" data-alert="{alert["id"]}">'
            f'<b>{escape(name)}</b>: {escape(alert["direction"])} surge in {escape(iso(alert["window_start"]))} – '
            f'{escape(iso(alert["window_end"]))} · {100 * alert["share"]:.0f}% {escape(alert["direction"])} of '
            f'{alert["n"]} events vs {100 * alert["baseline_share"]:.0f}% in the baseline ({alert["baseline_n"]} '
            f'events) · z {alert["z"]:.1f} · {mean}<table><tr><th>score</th><th>label</th>'
            f'<th>most {escape(alert["direction"])} texts</th></tr>{rows}</table></div>')


def _plot(name: str, windows: list[Window], alerts: list[dict[str, Any]], window: float) -> str:
    """Mean sentiment (top) and stacked volume (bottom) per window, alerts marked; base64 PNG."""
    from datetime import datetime, timezone

    import matplotlib.dates as mdates
    from matplotlib.figure import Figure  # no pyplot: no global state, no display backend

    def when(t: float) -> datetime:
        return datetime.fromtimestamp(t, timezone.utc)

    fig = Figure(figsize=(10, 3.6), dpi=90, layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    mids = [when(w.start + window / 2) for w in windows]
    width = window / 86400 * 0.85  # matplotlib dates are days
    top.axhline(0, color="#999", lw=0.8)
    top.plot(mids, [w.mean for w in windows], marker="o", ms=3, lw=1.4, color=COLORS["line"], label="mean sentiment")
    starts = {(a["window_start"], a["direction"]) for a in alerts}
    for a in alerts:
        color = COLORS["negative"] if a["direction"] == "negative" else COLORS["positive"]
        top.axvspan(when(a["window_start"]), when(a["window_end"]), color=color, alpha=0.18)
        if (a["window_start"] - window, a["direction"]) in starts:
            continue  # one label per run of alerting windows
        top.annotate("alert", (when(a["window_start"] + window / 2), a["mean"]), xytext=(0, -16 if a["mean"] < 0
                     else 10), textcoords="offset points", ha="center", color=color, fontsize=8, weight="bold")
    top.set_ylim(-1.05, 1.05)
    top.set_ylabel("sentiment")
    top.set_title(name, loc="left", fontsize=11)
    base = [0] * len(windows)
    for cls in ("negative", "neutral", "positive"):
        counts = [getattr(w, cls) for w in windows]
        bottom.bar(mids, counts, width=width, bottom=base, color=COLORS[cls], label=cls)
        base = [b + c for b, c in zip(base, counts)]
    bottom.set_ylabel("events")
    bottom.legend(loc="upper left", fontsize=7, ncols=3, frameon=False)
    bottom.xaxis.set_major_formatter(mdates.ConciseDateFormatter(bottom.xaxis.get_major_locator()))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
