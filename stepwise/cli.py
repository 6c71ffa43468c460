"""`stepwise` command line: each verb maps to a recipe. Bad input → one line on stderr, exit 2;
an unexpected bug → one line and the path of a log holding the traceback, exit 1.

Only argparse and the option model load at start-up; torch and transformers load inside the verbs,
so `--help` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stepwise.backends import backend_names
from stepwise.errors import StepwiseError
from stepwise.tasks.recommend.cli import HANDLERS as RECOMMEND_HANDLERS
from stepwise.tasks.retrieve.cli import HANDLERS as RETRIEVAL_HANDLERS

NUMBER = re.compile(r"^-((\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|inf|infinity|nan)$", re.IGNORECASE)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (what, and where to look) instead of a usage block."""

    def error(self, message: str) -> typing.NoReturn:
        message = message.replace("the following arguments are required:", "missing required option")
        print(f"{self.prog}: error: {message} — see `{self.prog} --help`", file=sys.stderr)
        raise SystemExit(2)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default only when it says something: not None, not an on/off switch's (a `--no-x` flag
    stores False: "default: True" would read backwards), and not when the help already states it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "(default" in text or action.default in (None, argparse.SUPPRESS, False) or action.nargs == 0:
            return text
        return super()._get_help_string(action)


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, so the CLI, YAML keys and the Python API never drift apart."""
    from pydantic import AliasChoices

    from stepwise.config import TrainConfig

    for name, field in TrainConfig.model_fields.items():
        flags = ["--" + name.replace("_", "-")]
        if isinstance(field.validation_alias, AliasChoices):
            flags += ["--" + str(a).replace("_", "-") for a in field.validation_alias.choices if a != name]
        annotation = field.annotation
        union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
        inner = [a for a in typing.get_args(annotation) if a is not type(None)] if union else [annotation]
        base = inner[0]
        default = "" if field.default is None or field.is_required() else f" (default: {field.default})"
        text = f"{field.description}{default}".replace("%", "%%")  # argparse formats help with %
        kwargs: dict[str, Any] = {"dest": name, "default": None, "help": text}
        if name == "task":
            from stepwise.tasks import task_names

            kwargs["choices"] = task_names()
        if len(inner) > 1:  # e.g. a column given by name or index: keep the string, readers decide
            parser.add_argument(*flags, **kwargs)
        elif typing.get_origin(base) is list:
            parser.add_argument(*flags, nargs="+", metavar="FILE", **kwargs)
        elif base is bool:
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, **kwargs)
        else:
            if typing.get_origin(base) is typing.Literal:
                kwargs["choices"] = list(typing.get_args(base))
            elif base in (int, float):
                kwargs["type"] = base
                kwargs["metavar"] = base.__name__.upper()
            parser.add_argument(*flags, **kwargs)


def _parser() -> argparse.ArgumentParser:
    from stepwise import __version__
    from stepwise.llm.cli import add_llm_flags

    parser = Parser(prog="stepwise", description="Fine-tune, evaluate and serve text classifiers and taggers "
                    "through multi-step optimization.")
    parser.add_argument("--version", action="version", version=f"stepwise {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    fmt = HelpFormatter

    # train/rl: defaults are printed from the option model (flags default to None so YAML can fill them)
    p_train = sub.add_parser("train", help="fine-tune a pretrained encoder")
    _add_run_flags(p_train)

    for verb, (text, run_help, flags) in RUN_VERBS.items():  # verbs that start from a trained run
        p_verb = sub.add_parser(verb, help=text)
        p_verb.add_argument("run", help=run_help)
        for flag, options in flags.items():
            p_verb.add_argument(flag, **options)
        _add_run_flags(p_verb)

    p_eval = sub.add_parser("evaluate", help="score a run on a labeled file", formatter_class=fmt)
    p_eval.add_argument("run")
    p_eval.add_argument("--data", required=True, help="labeled file")
    p_eval.add_argument("--json", action="store_true", help="print the metrics as one JSON line last")
    p_eval.add_argument("--plot", help="write a PNG of quality against steps and latency")
    _add_read_flags(p_eval)
    _add_refine_flags(p_eval)
    add_llm_flags(p_eval)

    p_pred = sub.add_parser("predict", help="predict labels for a file or stdin", formatter_class=fmt)
    p_pred.add_argument("run")
    p_pred.add_argument("--input", required=True, help="file, or - for stdin (one text per line)")
    p_pred.add_argument("--output-format", "--format", dest="output_format", choices=["jsonl", "tsv", "conll", "text"],
                        help="output format (default: jsonl; an editor's default is text, the corrected sentences; "
                        "conll: taggers only)")
    p_pred.add_argument("--output", help="write here instead of stdout (atomically)")
    _add_read_flags(p_pred)
    _add_refine_flags(p_pred)
    add_llm_flags(p_pred)

    p_export = sub.add_parser("export", help="a deployable ONNX (or Hugging Face) directory, with a parity gate",
                              formatter_class=fmt)
    p_export.add_argument("run")
    p_export.add_argument("--out", help="output directory (default: RUN/onnx, RUN/onnx-int8 or RUN/hf)")
    p_export.add_argument("--int8", action="store_true", help="int8 weights (dynamic quantization)")
    p_export.add_argument("--opset", type=int, default=18, help="ONNX opset")
    p_export.add_argument("--format", dest="export_format", choices=["onnx", "hf"], default="onnx",
                          help="onnx, or hf: Hugging Face's format where one of its classes has the same head")
    p_export.add_argument("--data", help="labeled file for the parity gate (default: the run's dev set)")
    p_export.add_argument("--threads", type=int, help="ONNX Runtime threads for the parity check")
    p_export.add_argument("--json", action="store_true", help="print the report as one JSON line last")

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

    from stepwise.tasks.retrieve.cli import add_answer_flags
    from stepwise.tasks.retrieve.cli import add_parsers as add_retrieval_parsers

    add_retrieval_parsers(sub, fmt)
    from stepwise.tasks.recommend.cli import add_parsers as add_recommend_parsers

    add_recommend_parsers(sub, fmt)

    p_serve = sub.add_parser("serve", help="an HTTP service for a run or an exported directory (FastAPI/uvicorn)",
                             formatter_class=fmt)
    p_serve.add_argument("run", help="a run directory, a directory written by `stepwise export`, or an index "
                         "written by `stepwise index` (served as POST /v1/answer); a recommender run is served as POST "
                         "/v1/recommend")
    p_serve.add_argument("--host", default="127.0.0.1", help="interface to bind (loopback unless you say otherwise)")
    p_serve.add_argument("--port", type=int, default=8000)
    p_serve.add_argument("--api-key-env", metavar="VAR", help="require the key held in this environment variable")
    p_serve.add_argument("--max-batch", type=int, default=32, help="most items merged from concurrent requests")
    p_serve.add_argument("--sub-batch", type=int, default=8, help="a merged batch runs as length-sorted forward "
                         "passes of this many items (less padding)")
    p_serve.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a batch waits to fill")
    p_serve.add_argument("--max-text-chars", type=int, default=4096, help="longest text accepted")
    p_serve.add_argument("--max-items", type=int, default=64, help="most texts in one request")
    p_serve.add_argument("--max-body-bytes", type=int, default=1_000_000, help="largest request body")
    p_serve.add_argument("--max-queue", type=int, default=1024, help="items waiting before requests get 503")
    p_serve.add_argument("--timeout-s", type=float, default=30.0, help="a request waiting longer gets 503")
    p_serve.add_argument("--workers", type=int, default=1, help="server processes, each with its own model")
    p_serve.add_argument("--threads", type=int, help="inference threads per worker (default: free cores / workers)")
    p_serve.add_argument("--backend", choices=backend_names(), default="auto",
                         help="auto: ONNX Runtime for an exported directory, torch for a run")
    add_answer_flags(p_serve, serving=True)
    p_serve.add_argument("--no-access-log", dest="access_log", action="store_false", help="no line per request")

    _add_search_parser(sub)
    _add_monitor_parser(sub, fmt)

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
    return parser


def _add_search_parser(sub: Any) -> None:
    p_search = sub.add_parser("search", help="hyperparameter search on Optuna: each trial a run under OUT/trials",
                              description="Search training options (TPE, pruning on the dev metric) in trials that "
                              "are normal run directories OUT/trials/NNNN; the study lives in OUT/study.db, so the "
                              "same command again continues it (also from several processes at once). Writes "
                              "OUT/trials.csv, trials.md, search.png and best.yaml (`stepwise train --config "
                              "OUT/best.yaml` retrains the best). Training flags given here are fixed in every trial.")
    p_search.add_argument("--trials", type=int, required=True, metavar="N",
                          help="finished (complete or pruned) trials the study should hold, counting earlier runs")
    p_search.add_argument("--timeout", type=float, metavar="S", help="start no new trial after S seconds")
    p_search.add_argument("--space", metavar="FILE", help="YAML search space, e.g. lr: {low: 1.0e-5, high: 1.0e-3, "
                          "log: true}; batch_size: {choices: [16, 32]} (default: the README's default space, less "
                          "the options fixed by flags)")
    p_search.add_argument("--pruner", choices=["median", "halving"], default="median",
                          help="median: stop a trial below the median of earlier trials at the same evaluation; "
                          "halving: asynchronous successive halving (default: median)")
    p_search.add_argument("--startup-trials", type=int, default=2, metavar="K",
                          help="median pruner: trials that finish before any is pruned (default: 2)")
    p_search.add_argument("--evals-per-epoch", type=int, default=2, metavar="E",
                          help="dev evaluations per epoch in every trial: the points where trials are compared "
                          "and pruned (default: 2)")
    p_search.add_argument("--storage", metavar="URL", help="Optuna storage shared by several machines, an SQLAlchemy "
                          "URL such as postgresql://host/db (default: sqlite OUT/study.db)")
    _add_run_flags(p_search)


def _add_monitor_parser(sub: Any, fmt: Any) -> None:
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
    p_mon.add_argument("--window", default="1h", help="aggregation window: 30s, 15m, 1h, 1d or seconds")
    p_mon.add_argument("--follow", action="store_true", help="keep reading lines appended to the input file")
    p_mon.add_argument("--stop-after-idle", type=float, metavar="S", help="stop after S seconds without a new line")
    p_mon.add_argument("--labels", metavar="L=NAME,...", help="name the classifier's labels, e.g. "
                       "0=bearish,1=bullish,2=neutral (negative/bearish and positive/bullish names set the direction)")
    p_mon.add_argument("--batch-size", type=int, default=256,
                       help="most events predicted together (a slow stream's batches are smaller)")
    p_mon.add_argument("--lateness", default="0s", help="how long a window stays open after a later event")
    p_mon.add_argument("--z", type=float, default=4.0, help="alert when a window's share of negative events is this "
                       "significant against the rolling baseline (exact binomial tail, as a normal z)")
    p_mon.add_argument("--min-count", type=int, default=10, help="events a window needs to be judged")
    p_mon.add_argument("--min-shift", type=float, default=0.2, help="and the share must rise by at least this much")
    p_mon.add_argument("--baseline-windows", type=int, default=24, help="previous windows forming the baseline")
    p_mon.add_argument("--alert-on", choices=["negative", "both"], default="negative", help="turns that alert")
    p_mon.add_argument("--webhook", metavar="URL", help="POST each alert as JSON here (queued, retried with backoff)")
    p_mon.add_argument("--webhook-wait", type=float, default=10.0, help="seconds to let queued alerts go out at the "
                       "end; the rest go on the next run")
    p_mon.add_argument("--backend", choices=backend_names(), default="auto",
                       help="auto: ONNX Runtime for an exported directory, torch for a run")
    p_mon.add_argument("--threads", type=int, help="inference threads (default: the cores other processes leave free)")
    p_mon.add_argument("--json", action="store_true", help="print the summary as one JSON line last")


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


def _add_run_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML file of options (flags override it)")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON line last")
    _add_config_flags(parser)


def _add_read_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input-format", dest="fmt", choices=["tsv", "csv", "jsonl", "conll"],
                        help="input format (default: from the extension; stdin: plain text, one per line)")
    parser.add_argument("--text-column", help="text column name or 0-based index")
    parser.add_argument("--label-column", help="label column name or 0-based index")
    parser.add_argument("--pair-column", help="second text column (text-pair classifiers)")
    parser.add_argument("--tag-column", type=int, help="CoNLL tag column (default: last)")


def _add_refine_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, help="refinement steps T (default: the run's --refine-steps)")
    parser.add_argument("--confidence", type=float, help="stop an example once its confidence reaches this")
    parser.add_argument("--time-budget-ms", type=float, help="start no new step after this many milliseconds")
    parser.add_argument("--keep", choices=["last", "best"], default="last",
                        help="return the last step or the step the model scores highest")
    parser.add_argument("--trace", help="write every step of every example to this JSONL file")
    parser.add_argument("--backend", choices=backend_names(), default="auto",
                        help="auto: ONNX Runtime for an exported directory, torch for a run")
    parser.add_argument("--threads", type=int, help="inference threads (default: the cores other processes leave free)")
    for name, field in _task_knobs().items():  # each task's own inference knobs (an editor's keep bias)
        parser.add_argument("--" + name.replace("_", "-"), type=_number_type(field.annotation),
                            help=field.description)


def _task_knobs() -> dict[str, Any]:
    """Every registered task's inference knobs (`Task.inference_model` fields), by name."""
    from stepwise.tasks import task_class, task_names

    return {name: field for task in task_names() if (model := getattr(task_class(task), "inference_model", None))
            for name, field in model.model_fields.items()}


def _number_type(annotation: Any) -> type:
    inner = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    return inner[0] if inner[0] in (int, float) else str


def _predict_options(args: argparse.Namespace) -> Any:
    from stepwise.predictor import PredictOptions

    if args.steps is not None and args.steps < 1:
        raise StepwiseError(f"--steps must be at least 1, got {args.steps}", fix="pass --steps 1 or more")
    if args.confidence is not None and not 0 < args.confidence <= 1:
        raise StepwiseError(f"--confidence must be in (0, 1], got {args.confidence}", fix="e.g. --confidence 0.95")
    if args.time_budget_ms is not None and args.time_budget_ms <= 0:
        raise StepwiseError(f"--time-budget-ms must be greater than 0, got {args.time_budget_ms:g}",
                            fix="e.g. --time-budget-ms 50")
    return PredictOptions(args.steps, args.confidence, args.time_budget_ms, args.keep)


def _read_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"fmt": args.fmt, "text_column": args.text_column, "label_column": args.label_column,
            "tag_column": args.tag_column, "pair_column": args.pair_column}


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


def _options(args: argparse.Namespace) -> dict[str, Any]:
    from stepwise.config import TrainConfig, load_yaml

    values = load_yaml(args.config) if args.config else {}
    values.update({k: v for k, v in vars(args).items() if k in TrainConfig.model_fields and v is not None})
    for required in ("train", "out"):
        if required not in values:
            raise StepwiseError(f"--{required} is required", fix=f"see `stepwise {args.command} --help`")
    return values


def _cmd_train(args: argparse.Namespace) -> int:
    from stepwise.config import build_config
    from stepwise.recipes.finetune import train

    run = train(build_config(_options(args), source=args.config or "command line"))
    return _print_run(run, args.json, run_quiet(args))


def _cmd_search(args: argparse.Namespace) -> int:
    from stepwise.recipes.search import search

    options = _options(args)
    out = options.pop("out")
    echo = None if run_quiet(args) or args.json else (lambda line: print(line, file=sys.stderr, flush=True))
    summary = search(trials=args.trials, out=out, timeout=args.timeout, space=args.space, pruner=args.pruner,
                     startup_trials=args.startup_trials, evals_per_epoch=args.evals_per_epoch, storage=args.storage,
                     echo=echo, **options)
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

    run = rl(args.run, **_options(args))
    return _print_run(run, args.json, run_quiet(args))


def _cmd_distill(args: argparse.Namespace) -> int:
    from stepwise.recipes.distill import distill

    run = distill(args.run, layers=args.layers, temperature=args.temperature, alpha=args.alpha,
                  unlabeled=args.unlabeled, **_options(args))
    return _print_run(run, args.json, run_quiet(args))


def _cmd_prune(args: argparse.Namespace) -> int:
    from stepwise.recipes.prune import prune

    run = prune(args.run, ffn=args.ffn, heads=args.heads, **_options(args))
    return _print_run(run, args.json, run_quiet(args))


def run_quiet(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "quiet", None))


def _print_run(run: Any, as_json: bool, quiet: bool) -> int:
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


def _warn_steps(predictor: Any, args: argparse.Namespace) -> None:
    if args.steps is not None and args.steps > 1 and not getattr(predictor, "is_refiner", True):
        print(f"stepwise: note: {args.run} is a single-step model (trained without --refine-steps); "
              f"--steps {args.steps} has no effect", file=sys.stderr)


def _open_run(path: str, args: argparse.Namespace | None = None) -> Any:
    """The run's (or export's) task from its metadata: enough to check inputs and options before loading."""
    from stepwise.rundir import model_meta
    from stepwise.tasks import task_class, task_from_meta, task_names

    task = task_from_meta(model_meta(path))
    knobs = _knobs_given(args)
    model = getattr(task, "inference_model", None)
    for name in knobs:
        if model is None or name not in model.model_fields:
            readers = [task_class(t).noun for t in task_names()
                       if name in getattr(getattr(task_class(t), "inference_model", None), "model_fields", {})]
            raise StepwiseError(f"--{name.replace('_', '-')} is for {' and '.join(readers)} runs; {path} is a "
                                f"{task.noun} run", fix=f"drop --{name.replace('_', '-')}")
    if knobs:
        from pydantic import ValidationError

        from stepwise.config import describe

        try:
            model(**knobs)  # the same validation as a Python caller's (the task's model)
        except ValidationError as err:
            raise StepwiseError(describe(err.errors()[0], knobs), fix="see `stepwise predict --help`") from None
    return task


def _knobs_given(args: argparse.Namespace | None) -> dict[str, Any]:
    return {k: v for k in _task_knobs() if (v := getattr(args, k, None)) is not None}


def _load(args: argparse.Namespace) -> Any:
    """The predictor on the chosen backend; --threads sets ONNX Runtime's or (for this process) torch's."""
    from stepwise.predictor import load_in_process

    predictor = load_in_process(args.run, backend=args.backend, threads=args.threads)
    for name, value in _knobs_given(args).items():
        setattr(predictor.task, name, value)
    return predictor


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from stepwise.llm.cli import check_llm_flags, llm_predictor, llm_summary, wants_llm
    from stepwise.recipes.evaluate import evaluate, read_labeled

    options = _predict_options(args)
    check_llm_flags(args)
    check_output_path(args.plot, "--plot")
    check_output_path(args.trace, "--trace", inputs=[args.data])
    examples = read_labeled(_open_run(args.run, args), args.data, **_read_options(args))
    predictor = _load(args)
    predictor = llm_predictor(predictor, args) if wants_llm(args) else predictor
    _warn_steps(predictor, args)
    score = evaluate(args.run, args.data, steps=options.steps, confidence=options.confidence,
                     time_budget_ms=options.time_budget_ms, keep=options.keep, predictor=predictor,
                     examples=examples)
    result = score.pop("result")
    if args.trace:
        from stepwise.files import atomic_write_text
        from stepwise.recipes.predict import trace_lines

        atomic_write_text(args.trace, trace_lines(predictor.task, result))
    if args.plot:
        from stepwise.report.curves import plot_steps

        plot_steps(score["steps"], args.plot)
    if args.json:
        metrics = {k: v for k, v in score["metrics"].items() if k != "confusion_matrix"}
        llm = {"llm": predictor.report()} if wants_llm(args) else {}
        print(json.dumps({"task": predictor.task.name, "data": str(args.data), **metrics, "steps": score["steps"],
                          "mean_steps": score["mean_steps"], **llm}))
    else:
        print(score["report"])
        if wants_llm(args):
            print(llm_summary(predictor.report()))
        if len(score["steps"]) > 1:
            for row in score["steps"]:
                print("  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
            print(f"mean steps per example: {score['mean_steps']:.2f}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from stepwise.files import atomic_write_text
    from stepwise.llm.cli import check_llm_flags, llm_predictor, llm_summary, wants_llm
    from stepwise.recipes.predict import predict, read_inputs, trace_lines

    options = _predict_options(args)
    check_llm_flags(args)
    check_output_path(args.output, "--output", inputs=[args.input])
    check_output_path(args.trace, "--trace", inputs=[args.input])
    task = _open_run(args.run, args)
    args.output_format = args.output_format or task.output_formats[0]
    task.check_output_format(args.output_format)
    examples = read_inputs(task, args.input, **_read_options(args))
    predictor = _load(args)
    predictor = llm_predictor(predictor, args) if wants_llm(args) else predictor
    _warn_steps(predictor, args)
    text, result = predict(predictor, examples, options, args.output_format)
    if wants_llm(args):
        print(f"stepwise: {llm_summary(predictor.report())}", file=sys.stderr)
    if args.trace:
        atomic_write_text(args.trace, trace_lines(predictor.task, result))
    if args.output:
        atomic_write_text(args.output, text)
    else:
        sys.stdout.write(text)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from stepwise.recipes.export import export

    report = export(args.run, out=args.out, int8=args.int8, opset=args.opset, fmt=args.export_format,
                    data=args.data, threads=args.threads)
    if args.json:
        print(json.dumps(report))
        return 0
    parity = report.get("parity")
    if parity:
        print(f"parity on {parity['examples']} examples: max |Δ logit| {parity['max_abs_logit_delta']:.3g}, "
              f"agreement {100 * parity['label_agreement']:.2f}% of labels, "
              f"{parity['metric']} torch {parity['metric_torch']:.4f} / onnx {parity['metric_onnx']:.4f}")
    print(f"exported to {report['out']}")
    return 0


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


def _cmd_serve(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or Ctrl-C; both drain in-flight requests and exit 0."""
    from stepwise.recipes.serve import serve
    from stepwise.serve.settings import ServeSettings

    settings = ServeSettings(
        host=args.host, port=args.port, api_key_env=args.api_key_env, max_batch=args.max_batch,
        sub_batch=args.sub_batch, max_wait_ms=args.max_wait_ms, max_text_chars=args.max_text_chars,
        max_items=args.max_items, max_body_bytes=args.max_body_bytes, max_queue=args.max_queue,
        timeout_s=args.timeout_s, workers=args.workers, threads=args.threads, backend=args.backend)
    answer = {k: v for k in ("rerank", "intent", "encoder", "k", "rerank_k")
              if (v := getattr(args, k, None)) is not None}  # set only when serving an index
    serve(args.run, settings, access_log=args.access_log, answer=answer)
    return 0


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
    from stepwise.monitor.alerts import Detector
    from stepwise.monitor.events import parse_duration

    for flag in ("classifier", "input", "db"):
        if getattr(args, flag) is None:
            raise StepwiseError(f"--{flag} is required", fix="see `stepwise monitor --help`")
    window = parse_duration(args.window)
    lateness = parse_duration(args.lateness, "--lateness", zero=True)
    options = recipe.MonitorOptions(window=window, batch_size=args.batch_size, follow=args.follow,
                                    stop_after_idle=args.stop_after_idle, lateness=lateness, webhook=args.webhook,
                                    webhook_wait=args.webhook_wait, labels=recipe.parse_label_map(args.labels),
                                    backend=args.backend, threads=args.threads)
    detector = Detector(window, z=args.z, min_count=args.min_count, min_shift=args.min_shift,
                        baseline_windows=args.baseline_windows, direction=args.alert_on)
    try:
        summary = recipe.monitor(args.classifier, args.input, args.db, tagger=args.tagger, options=options,
                                 detector=detector)
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


HANDLERS = {"train": _cmd_train, "rl": _cmd_rl, "distill": _cmd_distill, "prune": _cmd_prune,
            "evaluate": _cmd_evaluate, "predict": _cmd_predict, "export": _cmd_export, "noise": _cmd_noise,
            "monitor": _cmd_monitor, "search": _cmd_search,
            "serve": _cmd_serve,
            "runs": _cmd_runs,
            "show": _cmd_show, "demo": _cmd_demo}
HANDLERS.update(RETRIEVAL_HANDLERS)
HANDLERS.update(RECOMMEND_HANDLERS)
TRAINING = ("train", "rl", "distill", "prune")


def join_negative_values(argv: list[str]) -> list[str]:
    """`--lr -1e-4` → `--lr=-1e-4`: argparse would take a negative number in e-notation for a flag."""
    out: list[str] = []
    for token in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and NUMBER.match(token):
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models come from local directories only
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    argv = join_negative_values(list(sys.argv[1:] if argv is None else argv))
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    previous = _sigterm_as_interrupt()
    try:
        from stepwise.numbers import check_finite

        check_finite(vars(args))  # every float option of every verb: NaN and ±inf never reach a range check
        return HANDLERS[args.command](args)
    except StepwiseError as err:
        print(f"stepwise: error: {err.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = "continue with the same command plus --resume" if args.command in TRAINING else "nothing written"
        if args.command == "search":
            hint = "finished trials are kept; rerun the same command to continue the study"
        print(f"stepwise: interrupted — {hint}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `stepwise predict ... | head`: the reader left; not an error
        sys.stderr.close()
        return 0
    except Exception as err:  # noqa: BLE001 — the last resort: a bug, reported in one line with its log
        log = _crash_log(argv)
        print(f"stepwise: internal error: {type(err).__name__}: {str(err)[:200]} — this is a bug in stepwise; "
              f"the traceback is in {log}", file=sys.stderr)
        return 1
    finally:
        _restore_sigterm(previous)


def _crash_log(argv: Sequence[str]) -> str:
    """Write the current exception's traceback to a log file; returns its path."""
    import tempfile
    import time
    import traceback

    base = Path(os.environ.get("STEPWISE_LOG_DIR") or Path(tempfile.gettempdir()) / "stepwise-logs")
    try:
        base.mkdir(parents=True, exist_ok=True)
        path = base / f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        path.write_text(f"stepwise {' '.join(argv)}\n\n{traceback.format_exc()}", encoding="utf-8")
        return str(path)
    except OSError:
        return "(no log: the log directory is not writable)"


def _sigterm_as_interrupt() -> Any:
    """SIGTERM (a scheduler, `kill`) stops a run the way Ctrl-C does: cleanly, resumable."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)


def _restore_sigterm(previous: Any) -> None:
    import signal

    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
