"""What the verbs share: where outputs may go, a training command line's options, how a finished run is shown,
and the reading flags of the verbs that take data."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stepwise.errors import StepwiseError
from stepwise.options import add_flags


def check_output_path(path: str | None, flag: str, *, inputs: Sequence[str] = ()) -> None:
    """An output file that cannot be written (or would overwrite an input) is refused before any work."""
    if path is None:
        return
    from stepwise.files import nearest_existing, same_file

    target = Path(path)
    if target.is_dir():
        raise StepwiseError(f"{flag} is a directory", path=path, fix=f"give {flag} a file name")
    for source in inputs:
        if source != "-" and same_file(source, target):
            raise StepwiseError(f"{flag} is the input file: writing would destroy it", path=path,
                                fix=f"choose another {flag}")
    parent = nearest_existing(target.parent)
    if not parent.is_dir():
        raise StepwiseError(f"cannot write {flag}: {parent} is a file, not a directory", path=path,
                            fix=f"choose another {flag}")
    from stepwise.places import FILE, check_output

    check_output(path, flag, FILE, inputs=inputs)


def train_options(args: argparse.Namespace) -> dict[str, Any]:
    from stepwise.config import TrainConfig, load_yaml

    values = load_yaml(args.config) if args.config else {}
    values.update({k: v for k, v in vars(args).items() if k in TrainConfig.model_fields and v is not None})
    for required in ("train", "out"):
        if required not in values:
            raise StepwiseError(f"--{required} is required", fix=f"see `stepwise {args.command} --help`")
    return values


def run_quiet(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "quiet", None))


def print_run(run: Any, as_json: bool, quiet: bool) -> int:
    from stepwise.layout import REPORT_TXT
    from stepwise.training.distributed import from_environment

    if not from_environment().is_main:  # under torchrun, rank 0 speaks for the run
        return 0

    if as_json:
        print(json.dumps(run.results))
    elif quiet:
        print(f"run written to {run.path}")
    else:
        print((run.path / REPORT_TXT).read_text())
        print(f"run written to {run.path}")
    return 0


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, so the CLI, YAML keys and the Python API never drift apart (defaults stay
    None: a --config file fills what the command line leaves out)."""
    from stepwise.config import train_config

    add_flags(parser, train_config(), defaults=False)


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML file of options (flags override it)")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON line last")
    add_config_flags(parser)


def add_read_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input-format", dest="fmt", choices=["tsv", "csv", "jsonl", "conll"],
                        help="input format (default: from the extension; stdin: plain text, one per line)")
    parser.add_argument("--text-column", help="text column name or 0-based index")
    parser.add_argument("--label-column", help="label column name or 0-based index")
    parser.add_argument("--pair-column", help="second text column (text-pair classifiers)")
    parser.add_argument("--tag-column", type=int, help="CoNLL tag column (default: last)")


def read_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"fmt": args.fmt, "text_column": args.text_column, "label_column": args.label_column,
            "tag_column": args.tag_column, "pair_column": args.pair_column}
