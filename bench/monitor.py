"""The sentiment monitor on a replay of twitter_fin valid: throughput, detection delay, false alarms.

Run: make bench-monitor
     (or cd bench && ../.venv/bin/python monitor.py [--classifier RUN] [--backends torch,onnx-int8])
The classifier is a `stepwise train` run on twitter_fin (README, "Monitor"); without --classifier it is
trained here first with the README's command (bench/out/twitter_fin). Its labels 0/1/2 are named
bearish/bullish/neutral. The replay: valid's texts, shuffled (seed 0), spread evenly over HOURS hours, each
given one of four invented cashtags (prepended), so every company has a stationary stream of real finance
tweets. Each perturbed replay adds, for $ALFA from hour SURGE on for 2 hours, N extra bearish tweets per hour
(valid's label 0, also with $ALFA; N from --surge-per-hour, default 10, 20 and 30). For each backend (torch
on the run, ONNX Runtime on `stepwise export --int8`): ingestion events/s end to end (read, validate, predict,
store, detect; model load excluded; also per CPU-second of the process, which a busy shared machine changes
less), alerts on the unperturbed replay (false alarms) and, on each perturbed one, the delay in windows from
the surge's start to the first $ALFA alert.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

from common import OUT, SHARED, emit, need

COMPANIES = ["ALFA", "BRVO", "CHRL", "DLTA"]
START = datetime(2026, 3, 2, tzinfo=timezone.utc).timestamp()
LABELS = {"0": "bearish", "1": "bullish", "2": "neutral"}


def replay(path: Path, hours: int, surge_hour: int | None, surge_per_hour: int, seed: int = 0) -> list[dict]:
    from stepwise.data.readers import read_examples

    examples = read_examples(path)
    rng = random.Random(seed)
    order = list(range(len(examples)))
    rng.shuffle(order)
    rows = []
    for k, i in enumerate(order):
        when = START + (k + rng.random()) * hours * 3600 / len(order)
        rows.append({"id": f"v{i}", "time": when, "text": f"${COMPANIES[k % len(COMPANIES)]} {examples[i].text}",
                     "source": "twitter_fin valid"})
    if surge_hour is not None:
        bearish = [ex.text for ex in examples if ex.label == "0"]
        for h in range(surge_hour, surge_hour + 2):
            for j in range(surge_per_hour):
                rows.append({"id": f"surge{h}-{j}", "time": START + (h + rng.random()) * 3600,
                             "text": f"$ALFA {rng.choice(bearish)}", "source": "injected"})
    rows.sort(key=lambda r: r["time"])
    for r in rows:
        r["time"] = datetime.fromtimestamp(r["time"], timezone.utc).isoformat().replace("+00:00", "Z")
    return rows


def train_classifier(data: Path) -> Path:
    """The README's recipe: 2 epochs, defaults otherwise; dev split off train (7:2), valid as the test set."""
    out = OUT / "twitter_fin"
    if not (out / "results.json").exists():
        import stepwise

        shutil.rmtree(out, ignore_errors=True)
        run = stepwise.train(task="classify", train=str(data / "train.csv"), test=str(data / "valid.csv"), epochs=2,
                             out=str(out), quiet=True)
        print(json.dumps({"classifier": str(out), "test": {k: run.results["test"][k] for k in ("accuracy", "macro_f1")},
                          "train_seconds": run.results["train"]["seconds"]}))
    return out


def run_backend(name: str, model: Path, streams: dict[str, Path], window: float, surge_hour: int,
                threads: int | None) -> dict:
    """One backend on every stream: `flat`, and `surgeN` (N extra bearish $ALFA tweets per hour for 2 hours)."""
    from stepwise.recipes.monitor import MonitorOptions, load_model, monitor

    tick = time.perf_counter()
    predictor = load_model(model, "classify", "--classifier", threads=threads)
    row: dict = {"backend": name, "model_load_s": round(time.perf_counter() - tick, 1), "alerts_detail": {}}
    rates, cpu_rates = [], []
    for kind, stream in streams.items():
        db = OUT / f"monitor_{name}_{kind}.sqlite"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        lines: list[str] = []
        cpu = time.process_time()
        summary = monitor(model, str(stream), db, predictor=predictor, emit=lines.append,
                          options=MonitorOptions(window=window, labels=LABELS))
        cpu_rates.append(summary["new_events"] / (time.process_time() - cpu))
        alerts = [json.loads(line) for line in lines]
        rates.append(summary["events_per_s"])
        row["alerts_detail"][kind] = [(a["company"], a["window_start"], a["z"]) for a in alerts]
        if kind == "flat":
            row["flat_events"], row["flat_alerts"] = summary["new_events"], len(alerts)
            continue
        surge_start = START + surge_hour * 3600
        hits = [a for a in alerts if a["company"] == "ALFA" and a["direction"] == "negative"]
        first = min((datetime.fromisoformat(a["window_start"].replace("Z", "+00:00")).timestamp() for a in hits),
                    default=None)
        row[f"delay_{kind}"] = "missed" if first is None else round((first - surge_start) / window)
        row[f"alerts_{kind}"] = len(alerts)
        row[f"other_{kind}"] = len([a for a in alerts if a["company"] not in ("ALFA", "*")])
    row["events_per_s"] = round(sum(rates) / len(rates), 1)
    row["events_per_s_min_max"] = f"{min(rates)}-{max(rates)}"
    # events per CPU-second of this process (all its threads): what a busy shared machine changes least
    row["events_per_cpu_s"] = round(sum(cpu_rates) / len(cpu_rates), 1)
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--classifier", help="the twitter_fin run (default: train one in bench/out/twitter_fin)")
    parser.add_argument("--backends", default="torch,onnx-int8")
    parser.add_argument("--hours", type=int, default=36)
    parser.add_argument("--surge-hour", type=int, default=28)
    parser.add_argument("--surge-per-hour", default="10,20,30", help="surge sizes, extra bearish tweets per hour")
    parser.add_argument("--threads", type=int, help="inference threads (default: all cores)")
    parser.add_argument("--report", help="also write the largest surge's HTML report here")
    args = parser.parse_args()
    valid = need(SHARED / "twitter_fin") / "valid.csv"
    OUT.mkdir(parents=True, exist_ok=True)
    sizes = [int(x) for x in args.surge_per_hour.split(",")]
    streams = {}
    for kind, surge, size in [("flat", None, 0)] + [(f"surge{n}", args.surge_hour, n) for n in sizes]:
        streams[kind] = OUT / f"monitor_{kind}.jsonl"
        streams[kind].write_text("".join(json.dumps(r) + "\n" for r in replay(valid, args.hours, surge, size)))
    rows = []
    classifier = Path(args.classifier) if args.classifier else train_classifier(valid.parent)
    for name in args.backends.split(","):
        model = classifier
        if name == "onnx-int8":
            model = model / "onnx-int8"
            if not model.exists():
                import stepwise

                stepwise.export(classifier, int8=True)
        rows.append(run_backend(name, model, streams, 3600.0, args.surge_hour, args.threads))
    if args.report:
        from stepwise.recipes.monitor import report

        db = OUT / f"monitor_{rows[-1]['backend']}_surge{max(sizes)}.sqlite"
        report(db, args.report)
    columns = ["backend", "events_per_s", "events_per_s_min_max", "events_per_cpu_s", "flat_events", "flat_alerts"]
    columns += [f"{c}_surge{n}" for n in sizes for c in ("delay", "alerts", "other")]
    emit("monitor", rows, columns, {"hours": args.hours, "surge_hour": args.surge_hour, "window": "1h",
                                    "companies": COMPANIES, "threads": args.threads})


if __name__ == "__main__":
    main()
