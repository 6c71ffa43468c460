"""`stepwise recommend RUN --user U | --history ID,ID,... [--k 10] [--exclude-seen]`: JSONL, best first."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from stepwise.errors import StepwiseError


def add_parsers(sub: Any, fmt: Any) -> None:
    p = sub.add_parser("recommend", help="the next items for a user or a history, from a recommender run",
                       formatter_class=fmt)
    p.add_argument("run", help="a run trained with --task recommend")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--user", help="a user of the run's interaction log (their items, in time order)")
    who.add_argument("--history", help="item ids in time order, comma-separated (the last is the newest)")
    p.add_argument("--k", type=int, default=10, help="items to recommend")
    p.add_argument("--exclude-seen", action="store_true", help="never recommend an item of the history")
    p.add_argument("--backend", choices=["auto", "torch", "onnx"], default="auto",
                   help="auto: torch for a run")
    p.add_argument("--threads", type=int, help="inference threads (default: the cores other processes leave free)")


def cmd_recommend(args: argparse.Namespace) -> int:
    from stepwise.tasks.recommend.recommender import Recommender

    for name in ("k", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise StepwiseError(f"--{name} must be at least 1, got {value}", fix=f"e.g. --{name} 10")
    if args.user is None and args.history is None:
        raise StepwiseError("give --user U or --history ID,ID,...", fix="e.g. stepwise recommend RUN --user 196")
    history = None if args.history is None else [h.strip() for h in args.history.split(",")]
    recommender = Recommender.open(args.run, backend=args.backend, threads=args.threads)
    records = recommender.recommend(user=args.user, history=history, k=args.k, exclude_seen=args.exclude_seen)
    sys.stdout.write("".join(json.dumps(r) + "\n" for r in records))
    return 0


HANDLERS = {"recommend": cmd_recommend}
