"""train, rl, distill, prune and search: the verbs that write runs, their options from TrainConfig."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from stepwise.commands.common import add_run_flags, print_run, run_quiet, train_options
from stepwise.options import add_flags


def add_parsers(sub: Any, fmt: Any) -> None:
    # train/rl: defaults are printed from the option model (flags default to None so YAML can fill them)
    p_train = sub.add_parser("train", help="fine-tune a pretrained encoder")
    add_run_flags(p_train)

    for verb, (text, run_help, flags) in RUN_VERBS.items():  # verbs that start from a trained run
        p_verb = sub.add_parser(verb, help=text)
        p_verb.add_argument("run", help=run_help)
        for flag, options in flags.items():
            p_verb.add_argument(flag, **options)
        add_run_flags(p_verb)
    add_search_parser(sub)


RUN_VERBS: dict[str, tuple[str, str, dict[str, dict[str, Any]]]] = {
    "rl": ("optimize a trained run for a reward with policy gradient (REINFORCE)",
           "the supervised run to start from", {}),
    "distill": ("train a shallower student of a run on its soft targets", "the trained run to distill (the teacher)", {
        "--layers": {"type": int, "required": True, "metavar": "K",
                     "help": "encoder layers the student keeps (evenly spread, the top one included)"},
        "--temperature": {"type": float, "default": 2.0, "metavar": "T",
                          "help": "softmax temperature of the teacher's soft targets (default: 2.0)"},
        "--alpha": {"type": float, "default": 0.9, "metavar": "A",
                    "help": "weight of the soft targets; 1 - A weighs the gold labels (default: 0.9)"},
        "--unlabeled": {"metavar": "FILE", "help": "texts without labels (one per line) trained on the teacher's "
                        "soft targets only, beside --train"}}),
    "prune": ("remove a run's least important FFN neurons, then fine-tune briefly", "the trained run to prune", {
        "--ffn": {"type": float, "required": True, "metavar": "P",
                  "help": "share of every layer's FFN neurons to remove, in (0, 1)"},
        "--heads": {"type": float, "default": 0.0, "metavar": "P",
                    "help": "share of attention heads to remove; only 0 is possible with a standard BERT config"}}),
}


def add_search_parser(sub: Any) -> None:
    p_search = sub.add_parser("search", help="hyperparameter search on Optuna: each trial a run under OUT/trials",
                              description="Search training options (TPE, pruning on the dev metric) in trials that "
                              "are normal run directories OUT/trials/NNNN; the study lives in OUT/study.db, so the "
                              "same command again continues it (also from several processes at once). Writes "
                              "OUT/trials.csv, trials.md, search.png and best.yaml (`stepwise train --config "
                              "OUT/best.yaml` retrains the best). Training flags given here are fixed in every trial.")
    from stepwise.recipes.search import SearchOptions

    add_flags(p_search, SearchOptions)  # the search's own options; the training flags below are fixed in every trial
    add_run_flags(p_search)


def _cmd_train(args: argparse.Namespace) -> int:
    from stepwise.config import build_config
    from stepwise.recipes.finetune import train

    run = train(build_config(train_options(args), source=args.config or "command line"))
    return print_run(run, args.json, run_quiet(args))


def _cmd_search(args: argparse.Namespace) -> int:
    from stepwise.recipes.search import SearchOptions, search

    options = train_options(args)
    out = options.pop("out")
    echo = None if run_quiet(args) or args.json else (lambda line: print(line, file=sys.stderr, flush=True))
    summary = search(**SearchOptions.from_args(args).model_dump(), out=out, echo=echo, **options)
    if args.json:
        print(json.dumps(summary))
        return 0
    best = summary.get("best")
    states = ", ".join(f"{v} {k.lower()}" for k, v in summary["trials"].items())
    print(f"search in {out}: {states}")
    if best:
        metric = summary["metric"]
        test = "".join(f", test {k} {v:.4f}" for k, v in best.get("test", {}).items() if k == metric)
        print(f"best: trial {best['trial']} (dev {metric} {best[f'dev_{metric}']:.4f}{test}) — retrain it with "
              f"`stepwise train --config {best['best_yaml']}`")
    return 0


def _cmd_rl(args: argparse.Namespace) -> int:
    from stepwise.recipes.rl import rl

    run = rl(args.run, **train_options(args))
    return print_run(run, args.json, run_quiet(args))


def _cmd_distill(args: argparse.Namespace) -> int:
    from stepwise.recipes.distill import distill

    run = distill(args.run, layers=args.layers, temperature=args.temperature, alpha=args.alpha,
                  unlabeled=args.unlabeled, **train_options(args))
    return print_run(run, args.json, run_quiet(args))


def _cmd_prune(args: argparse.Namespace) -> int:
    from stepwise.recipes.prune import prune

    run = prune(args.run, ffn=args.ffn, heads=args.heads, **train_options(args))
    return print_run(run, args.json, run_quiet(args))


HANDLERS = {"train": _cmd_train, "rl": _cmd_rl, "distill": _cmd_distill, "prune": _cmd_prune, "search": _cmd_search}
