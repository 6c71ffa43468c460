"""runs, show and demo: the runs under a directory, one run's options and results, and each task's demo."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parsers(sub: Any, fmt: Any) -> None:
    p_runs = sub.add_parser("runs", help="list the runs under a directory (task, metric, date)",
                            formatter_class=fmt)
    p_runs.add_argument("dir", nargs="?", default="runs", help="where to look")
    p_show = sub.add_parser("show", help="a run's config, labels and results")
    p_show.add_argument("run")

    p_demo = sub.add_parser("demo", help="the main job on the embedded headline data and the bundled MiniLM",
                            formatter_class=fmt)
    apps = demo_apps()
    p_demo.add_argument("--app", choices=list(apps), default=next(iter(apps)),
                        help="; ".join(f"{name}: {about}" for name, (_, about) in apps.items()))
    p_demo.add_argument("--out", help="run directory (default: runs/demo, runs/demo-answer or runs/demo-recommend)")
    p_demo.add_argument("--json", action="store_true")


def _cmd_runs(args: argparse.Namespace) -> int:
    from stepwise.rundir import list_runs

    rows = list_runs(args.dir)
    if not rows:
        print(f"no runs under {args.dir}")
        return 0
    width = max(len(r["path"]) for r in rows)
    print(f"{'run':<{width}}  {'task':<8}  {'status':<10}  {'metric':<20}  written")
    for r in rows:
        print(f"{r['path']:<{width}}  {r['task']:<8}  {r['status']:<10}  {r['metric']:<20}  {r['date']}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from stepwise.rundir import describe_run

    print(describe_run(args.run))
    return 0


def demo_apps() -> dict[str, tuple[str, str]]:
    """`stepwise demo --app NAME`: each task's demo (`Task.demo`), app name → ("module:function", what it is)."""
    from stepwise.tasks import task_class, task_names

    return {demo[0]: demo[1:] for name in task_names() if (demo := getattr(task_class(name), "demo", None))}


def _cmd_demo(args: argparse.Namespace) -> int:
    import importlib

    module, _, attr = demo_apps()[args.app][0].partition(":")
    results = getattr(importlib.import_module(module), attr)(args.out, quiet=args.json)
    if args.json:
        print(json.dumps(results))
    return 0


HANDLERS = {"runs": _cmd_runs, "show": _cmd_show, "demo": _cmd_demo}
