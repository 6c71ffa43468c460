"""A team-written demo stream: headlines about invented companies over several days, with an injected
negative surge for one company. Each event carries its intended sentiment as `gold` (the monitor ignores
extra keys), so the same generator also writes training text for a classifier that knows its style.
"""

from __future__ import annotations

import math
import random
from datetime import datetime, timezone
from typing import Any

COMPANIES = [("ACMR", "Acme Robotics"), ("VLME", "Vellum Energy"), ("CRVD", "Corvid Logistics"),
             ("KSTF", "Kestrel Foods"), ("QLTC", "Quillon Telecom")]
TEMPLATES = {
    "negative": ["{name} shares slump after profit warning", "{name} cuts full-year outlook as demand weakens",
                 "{name} misses earnings estimates for third straight quarter", "Regulator opens probe into {name}",
                 "{name} loses key customer contract to rival", "{name} net profit falls 15 percent",
                 "Analysts downgrade {name} to sell on weak orders", "{name} recalls products over safety fault",
                 "{name} suspends dividend amid cash squeeze", "Auditors flag accounting problems at {name}",
                 "{name} shares plunge as chief executive quits", "{name} announces layoffs after sales drop"],
    "neutral": ["{name} to report quarterly results on Thursday", "{name} board to meet next week",
                "{name} names new head of investor relations", "{name} renews credit facility on similar terms",
                "{name} sets record date for interim payment", "{name} releases monthly traffic figures",
                "{name} completes move of headquarters to new offices", "{name} confirms date of shareholder vote",
                "{name} files annual report with regulator", "{name} presents at industry conference"],
    "positive": ["{name} shares jump after record orders", "{name} raises full-year outlook on strong demand",
                 "Investors cheer {name} surprise earnings beat", "{name} wins large contract from state utility",
                 "{name} net profit rises 20 percent", "Analysts upgrade {name} to buy on margin gains",
                 "{name} expands margins as costs fall", "{name} lifts dividend after strong year",
                 "{name} sales rise 30 percent on new product line", "{name} shares hit all-time high"],
}
MIX = {"negative": 0.2, "neutral": 0.5, "positive": 0.3}
START = datetime(2026, 3, 2, tzinfo=timezone.utc).timestamp()


def headline(rng: random.Random, label: str, ticker: str, name: str) -> str:
    text = rng.choice(TEMPLATES[label]).format(name=name)
    return f"${ticker} {text}" if rng.random() < 0.7 else f"{text} ${ticker}"


def demo_stream(*, days: int = 3, per_hour: float = 12.0, seed: int = 0, surge: str | None = "ACMR",
                surge_hour: int = 50, surge_hours: int = 2, surge_per_hour: float = 40.0,
                surge_negative: float = 0.9, start: float = START) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Events (sorted by time) for every company at `per_hour` per hour on average, and, for `surge`, from hour
    `surge_hour` on for `surge_hours` hours, `surge_per_hour` more events per hour, mostly negative."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    hours = days * 24
    for ticker, name in COMPANIES:
        for hour in range(hours):
            count = _poisson(rng, per_hour)
            in_surge = ticker == surge and surge_hour <= hour < surge_hour + surge_hours
            extra = _poisson(rng, surge_per_hour) if in_surge else 0
            for k in range(count + extra):
                if k >= count:  # the surge's own events
                    label = "negative" if rng.random() < surge_negative else rng.choice(["neutral", "positive"])
                else:
                    label = rng.choices(list(MIX), weights=list(MIX.values()))[0]
                when = start + (hour + rng.random()) * 3600
                rows.append({"time": when, "text": headline(rng, label, ticker, name), "source": "demo",
                             "gold": label})
    rows.sort(key=lambda r: r["time"])
    for i, row in enumerate(rows):
        row["id"] = f"demo-{seed}-{i}"
        row["time"] = datetime.fromtimestamp(row["time"], timezone.utc).isoformat().replace("+00:00", "Z")
    info = {"companies": [t for t, _ in COMPANIES], "surge": surge, "surge_start": start + surge_hour * 3600,
            "surge_hours": surge_hours}
    return [{"id": r["id"], **{k: v for k, v in r.items() if k != "id"}} for r in rows], info


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method; fine for the small means used here."""
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1
