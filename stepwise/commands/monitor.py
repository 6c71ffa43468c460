"""monitor: a stream of events classified into per-company sentiment windows and alerts; its report and demo
stream."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from stepwise.cli import Parser
from stepwise.commands.common import check_output_path
from stepwise.options import add_flags


def add_parsers(sub: Any, fmt: Any) -> None:
    add_monitor_parser(sub, fmt)


def add_monitor_parser(sub: Any, fmt: Any) -> None:
    p_mon = sub.add_parser("monitor", help="financial sentiment monitor: a JSONL stream in, per-company sentiment "
                           "per window in SQLite, alerts out (`monitor report`: the HTML page)", formatter_class=fmt,
                           description="Classify a stream of JSONL events {\"id\",\"time\",\"text\",\"source\"?}, "
                           "store them with per-company/per-window aggregates in SQLite and alert when a company's "
                           "sentiment turns. Sub-verbs: `stepwise monitor report --help`, `stepwise monitor stream "
                           "--help`.")
    mon_sub = p_mon.add_subparsers(dest="monitor_command", parser_class=Parser, metavar="{report,stream}")
    p_rep = mon_sub.add_parser("report", help="a self-contained HTML report of a monitor database", formatter_class=fmt)
    p_rep.add_argument("--db", dest="report_db", required=True, metavar="FILE", help="the monitor's SQLite database")
    p_rep.add_argument("--out", dest="report_out", required=True, metavar="FILE",
                       help="HTML file to write (atomically)")
    p_rep.add_argument("--top", type=int, default=12, help="companies plotted besides the whole stream (by volume; "
                       "companies with alerts are always shown)")
    p_rep.add_argument("--examples", type=int, default=5, help="most negative texts listed per alert")
    p_str = mon_sub.add_parser("stream", help="write the demo stream: invented companies, a negative surge",
                               formatter_class=fmt)
    p_str.add_argument("--out", dest="stream_out", required=True, metavar="FILE", help="JSONL file to write")
    p_str.add_argument("--days", type=int, default=3)
    p_str.add_argument("--per-hour", type=float, default=12.0, help="events per company per hour")
    p_str.add_argument("--surge", default="ACMR", help="ticker with the injected negative surge ('' for none)")
    p_str.add_argument("--surge-hour", type=int, default=50, help="hour the surge starts (it lasts 2 hours)")
    p_str.add_argument("--surge-per-hour", type=float, default=40.0, help="extra events per surge hour, 90%% negative")
    p_str.add_argument("--seed", type=int, default=0)
    p_mon.add_argument("--classifier", metavar="RUN", help="sentiment classifier: a run or an exported directory")
    p_mon.add_argument("--tagger", metavar="RUN", help="optional NER tagger: its ORG entities name companies too")
    p_mon.add_argument("--input", metavar="FILE", help="JSONL events: a file, or - for stdin")
    p_mon.add_argument("--db", metavar="FILE", help="SQLite database (created if missing; a rerun continues it)")
    from stepwise.recipes.monitor import MonitorOptions

    add_flags(p_mon, MonitorOptions)  # the options model declares every monitor option once
    p_mon.add_argument("--json", action="store_true", help="print the summary as one JSON line last")


def _cmd_monitor(args: argparse.Namespace) -> int:
    from stepwise.recipes import monitor as recipe

    if args.monitor_command == "report":
        check_output_path(args.report_out, "--out", inputs=[args.report_db])
        summary = recipe.report(args.report_db, args.report_out, top=args.top, examples=args.examples)
        print(f"report of {summary['events']} events, {summary['alerts']} alerts written to {summary['out']}")
        return 0
    if args.monitor_command == "stream":
        check_output_path(args.stream_out, "--out")
        info = recipe.write_stream(args.stream_out, days=args.days, per_hour=args.per_hour, surge=args.surge or None,
                                   surge_hour=args.surge_hour, surge_per_hour=args.surge_per_hour, seed=args.seed)
        print(f"{info['events']} events written to {info['out']}")
        return 0
    options = recipe.MonitorOptions.from_args(args)
    try:
        summary = recipe.monitor(args.classifier, args.input, args.db, tagger=args.tagger, options=options)
    except KeyboardInterrupt:
        print("stepwise: interrupted — every finished batch is stored; run the same command to continue",
              file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{summary['new_events']} new events ({summary['duplicates']} already stored), {summary['new_rejects']} "
              f"rejected lines, {summary['new_alerts']} alerts in {summary['seconds']:.1f} s "
              f"({summary['events_per_s']} events/s); the database holds {summary['totals']['events']} events",
              file=sys.stderr)
    return 0


HANDLERS = {"monitor": _cmd_monitor}
