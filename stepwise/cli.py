"""`stepwise` command line: a thin layer over stepwise.api. Bad input → one line on stderr, exit 2."""

from __future__ import annotations

import argparse
import json
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stepwise.config import TrainConfig, build_config, load_yaml
from stepwise.errors import StepwiseError

POSITIONAL_FREE = ("task", "train", "dev", "test", "out", "model")


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, so the CLI, YAML keys and the Python API never drift apart."""
    for name, field in TrainConfig.model_fields.items():
        flag = "--" + name.replace("_", "-")
        annotation = field.annotation
        args = typing.get_args(annotation)
        inner = [a for a in args if a is not type(None)] or [annotation]
        base = inner[0]
        kwargs: dict[str, Any] = {"dest": name, "default": None, "help": field.description}
        if len(inner) > 1:  # e.g. a column given by name or index: keep the string, readers decide
            parser.add_argument(flag, **kwargs)
            continue
        if base is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
            continue
        if typing.get_origin(base) is typing.Literal:
            kwargs["choices"] = list(typing.get_args(base))
        elif base in (int, float):
            kwargs["type"] = base
            kwargs["metavar"] = base.__name__.upper()
        parser.add_argument(flag, **kwargs)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stepwise", description="Fine-tune, evaluate and serve text "
                                     "classifiers and taggers through multi-step optimization.")
    sub = parser.add_subparsers(dest="command", required=True)

    p_train = sub.add_parser("train", help="fine-tune a pretrained encoder")
    p_train.add_argument("--config", help="YAML file of options (flags override it)")
    p_train.add_argument("--json", action="store_true", help="print the results as one JSON line last")
    _add_config_flags(p_train)

    p_rl = sub.add_parser("rl", help="optimize a trained run for a reward with policy gradient (REINFORCE)")
    p_rl.add_argument("run", help="the supervised run to start from")
    p_rl.add_argument("--config", help="YAML file of options (flags override it)")
    p_rl.add_argument("--json", action="store_true", help="print the results as one JSON line last")
    _add_config_flags(p_rl)

    p_eval = sub.add_parser("evaluate", help="score a run on a labeled file")
    p_eval.add_argument("run")
    p_eval.add_argument("--data", required=True, help="labeled file")
    p_eval.add_argument("--json", action="store_true", help="print the metrics as one JSON line last")
    p_eval.add_argument("--plot", help="write a PNG of quality against steps and latency")
    _add_read_flags(p_eval)
    _add_refine_flags(p_eval)

    p_pred = sub.add_parser("predict", help="predict labels for a file or stdin")
    p_pred.add_argument("run")
    p_pred.add_argument("--input", required=True, help="file, or - for stdin (one text per line)")
    p_pred.add_argument("--format", choices=["jsonl", "tsv", "conll"], default="jsonl", help="output format")
    p_pred.add_argument("--output", help="write here instead of stdout (atomically)")
    _add_read_flags(p_pred)
    _add_refine_flags(p_pred)

    p_demo = sub.add_parser("demo", help="the main job on the embedded headline data and the bundled MiniLM")
    p_demo.add_argument("--out", default="runs/demo", help="run directory (default: runs/demo)")
    p_demo.add_argument("--json", action="store_true")
    return parser


def _add_read_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input-format", dest="fmt", choices=["tsv", "csv", "jsonl", "conll"],
                        help="input format (default: from the extension)")
    parser.add_argument("--text-column", help="text column name or 0-based index")
    parser.add_argument("--label-column", help="label column name or 0-based index")
    parser.add_argument("--tag-column", type=int, help="CoNLL tag column (default: last)")


def _add_refine_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, help="refinement steps T (default: the run's --refine-steps)")
    parser.add_argument("--confidence", type=float, help="stop an example once its confidence reaches this")
    parser.add_argument("--time-budget-ms", type=float, help="start no new step after this many milliseconds")
    parser.add_argument("--keep", choices=["last", "best"], default="last",
                        help="return the last step or the step the model scores highest")
    parser.add_argument("--trace", help="write every step of every example to this JSONL file")


def _refine_options(args: argparse.Namespace) -> dict[str, Any]:
    if args.steps is not None and args.steps < 1:
        raise StepwiseError(f"--steps must be at least 1, got {args.steps}", fix="pass --steps 1 or more")
    if args.confidence is not None and not 0 < args.confidence <= 1:
        raise StepwiseError(f"--confidence must be in (0, 1], got {args.confidence}", fix="e.g. --confidence 0.95")
    return {"steps": args.steps, "confidence": args.confidence, "time_budget_ms": args.time_budget_ms,
            "keep": args.keep}


def _write_trace(path: str, task: Any, result: Any) -> None:
    from stepwise.files import atomic_write_text

    lines = []
    for i, (history, scores) in enumerate(zip(result.history, result.scores)):
        steps = [{"step": t + 1, "prediction": _plain(task.ids_to_labels(p)), "score": round(s, 6)}
                 for t, (p, s) in enumerate(zip(history, scores))]
        lines.append(json.dumps({"index": i, "steps": steps, "chosen_step": result.chosen_step[i]}))
    atomic_write_text(path, "\n".join(lines) + "\n")


def _plain(value: Any) -> Any:
    return value if isinstance(value, (str, list)) else str(value)


def _read_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"fmt": args.fmt, "text_column": args.text_column, "label_column": args.label_column,
            "tag_column": args.tag_column}


def _options(args: argparse.Namespace) -> dict[str, Any]:
    values = load_yaml(args.config) if args.config else {}
    values.update({k: v for k, v in vars(args).items() if k in TrainConfig.model_fields and v is not None})
    for required in ("train", "out"):
        if required not in values:
            raise StepwiseError(f"--{required} is required", fix=f"see `stepwise {args.command} --help`")
    return values


def _cmd_train(args: argparse.Namespace) -> int:
    from stepwise.api import train

    run = train(build_config(_options(args), source=args.config or "command line"))
    return _print_run(run, args.json)


def _cmd_rl(args: argparse.Namespace) -> int:
    from stepwise.api import rl

    return _print_run(rl(args.run, **_options(args)), args.json)


def _print_run(run: Any, as_json: bool) -> int:
    if not as_json:
        print((run.path / "report.txt").read_text())
        print(f"run written to {run.path}")
    else:
        print(json.dumps(run.results))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from stepwise.api import evaluate

    score = evaluate(args.run, args.data, **_read_options(args), **_refine_options(args))
    result = score.pop("result")
    if args.trace:
        from stepwise.predictor import load

        _write_trace(args.trace, load(args.run).task, result)
    if args.plot:
        from stepwise.report.curves import plot_steps

        plot_steps(score["steps"], args.plot)
    if args.json:
        metrics = {k: v for k, v in score["metrics"].items() if k != "confusion_matrix"}
        print(json.dumps({"task": _task_of(args.run), "data": str(args.data), **metrics, "steps": score["steps"],
                          "mean_steps": score["mean_steps"]}))
    else:
        print(score["report"])
        if len(score["steps"]) > 1:
            for row in score["steps"]:
                print("  ".join(f"{k}={v}" for k, v in row.items()))
            print(f"mean steps per example: {score['mean_steps']:.2f}")
    return 0


def _task_of(run: str) -> str:
    meta = Path(run, "model", "stepwise.json")
    return json.loads(meta.read_text())["task"] if meta.is_file() else "unknown"


def _cmd_predict(args: argparse.Namespace) -> int:
    from stepwise.data.readers import read_examples
    from stepwise.predictor import load
    from stepwise.writers import format_predictions

    predictor = load(args.run)
    opts = _read_options(args)
    from stepwise.api import preferred_format

    if args.input == "-" and opts["fmt"] is None:
        opts["fmt"] = "conll" if predictor.task.name == "tag" else "tsv"
    if predictor.task.name == "tag":
        opts["label_column"] = None  # plain-text input for a tagger: one sentence per line
    examples = read_examples(args.input, require_labels=False, prefer=preferred_format(predictor.task.name), **opts)
    result = predictor.refine(examples, **_refine_options(args))
    probs = result.outputs
    if args.trace:
        _write_trace(args.trace, predictor.task, result)
    text = format_predictions(predictor.task, examples, probs, args.format)
    if args.output:
        from stepwise.files import atomic_write_text

        atomic_write_text(args.output, text)
    else:
        sys.stdout.write(text)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from stepwise.demo import run_demo

    results = run_demo(args.out, quiet=args.json)
    if args.json:
        print(json.dumps(results))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = {"train": _cmd_train, "rl": _cmd_rl, "evaluate": _cmd_evaluate, "predict": _cmd_predict,
               "demo": _cmd_demo}
    try:
        return handler[args.command](args)
    except StepwiseError as err:
        print(f"stepwise: error: {err.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stepwise: interrupted — continue with the same command plus --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
