"""noise: (noisy, clean) learner-error pairs from clean sentences, an editor's training data."""

from __future__ import annotations

import argparse
import json
from typing import Any

from stepwise.commands.common import check_output_path
from stepwise.errors import StepwiseError


def add_parsers(sub: Any, fmt: Any) -> None:
    p_noise = sub.add_parser("noise", help="(noisy, clean) learner-error pairs from clean sentences, for an editor",
                             formatter_class=fmt)
    p_noise.add_argument("--input", required=True, help="clean text, one tokenized sentence per line (- for stdin)")
    p_noise.add_argument("--out", required=True, help="TSV of noisy<TAB>clean pairs to write (atomically)")
    p_noise.add_argument("--seed", type=int, default=0, help="the same seed gives the same pairs")
    p_noise.add_argument("--copies", type=int, default=1, help="noisy versions per sentence")
    p_noise.add_argument("--keep-clean", type=float, default=0.0, help="share of pairs left unchanged")
    p_noise.add_argument("--rate", action="append", default=[], metavar="TYPE=P",
                         help="per-sentence probability of an error type, e.g. --rate spelling=0.6 (repeatable); "
                         "types: agreement, verb_form, noun_number, article, preposition, missing_word, word_order, "
                         "duplicate_word, punctuation, spelling, casing")
    p_noise.add_argument("--scale", type=float, default=1.0, metavar="S",
                         help="multiply every rate by S, capped at 0.95 (an editor trained on --scale 2.5 did best "
                         "on JFLEG; default 1: about learner density)")
    p_noise.add_argument("--json", action="store_true", help="print the summary as one JSON line")


def _cmd_noise(args: argparse.Namespace) -> int:
    from stepwise.recipes.noise import run

    rates: dict[str, float] = {}
    for item in args.rate:
        name, sep, value = item.partition("=")
        try:
            rates[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise StepwiseError(f"--rate {item!r} is not TYPE=P", fix="e.g. --rate spelling=0.6") from None
    check_output_path(args.out, "--out", inputs=[args.input])
    summary = run(args.input, args.out, seed=args.seed, rates=rates or None, copies=args.copies,
                  keep_clean=args.keep_clean, scale=args.scale)
    if args.json:
        print(json.dumps(summary))
    else:
        errors = ", ".join(f"{k} {v}" for k, v in summary["errors"].items() if v)
        print(f"{summary['pairs']} pairs from {summary['sentences']} sentences ({summary['unchanged']} unchanged; "
              f"{summary['errors_per_noisy_pair']} errors per noisy pair: {errors}) written to {summary['out']}")
    return 0


HANDLERS = {"noise": _cmd_noise}
