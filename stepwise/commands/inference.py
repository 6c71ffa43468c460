"""evaluate and predict: a trained run (or an export) on new data, with the refinement, the task's inference
knobs and the LLM policy's options."""

from __future__ import annotations

import argparse
import json
import sys
import typing
from typing import Any

from stepwise.backends import backend_names
from stepwise.commands.common import add_read_flags, check_output_path, read_options
from stepwise.errors import StepwiseError
from stepwise.options import add_flags


def add_parsers(sub: Any, fmt: Any) -> None:
    from stepwise.llm.cli import add_llm_flags

    p_eval = sub.add_parser("evaluate", help="score a run on a labeled file", formatter_class=fmt)
    p_eval.add_argument("run")
    p_eval.add_argument("--data", required=True, help="labeled file")
    p_eval.add_argument("--json", action="store_true", help="print the metrics as one JSON line last")
    p_eval.add_argument("--plot", help="write a PNG of quality against steps and latency")
    add_read_flags(p_eval)
    add_refine_flags(p_eval)
    add_llm_flags(p_eval)

    p_pred = sub.add_parser("predict", help="predict labels for a file or stdin", formatter_class=fmt)
    p_pred.add_argument("run")
    p_pred.add_argument("--input", required=True, help="file, or - for stdin (one text per line)")
    p_pred.add_argument("--output-format", "--format", dest="output_format", choices=["jsonl", "tsv", "conll", "text"],
                        help="output format (default: jsonl; an editor's default is text, the corrected sentences; "
                        "conll: taggers only)")
    p_pred.add_argument("--output", help="write here instead of stdout (atomically)")
    add_read_flags(p_pred)
    add_refine_flags(p_pred)
    add_llm_flags(p_pred)


def add_refine_flags(parser: argparse.ArgumentParser) -> None:
    from stepwise.predictor import PredictOptions

    add_flags(parser, PredictOptions)
    parser.add_argument("--trace", help="write every step of every example to this JSONL file")
    parser.add_argument("--backend", choices=backend_names(), default="auto",
                        help="auto: ONNX Runtime for an exported directory, torch for a run")
    parser.add_argument("--threads", type=int, help="inference threads (default: the cores other processes leave free)")
    for name, field in task_knobs().items():  # each task's own inference knobs (an editor's keep bias)
        parser.add_argument("--" + name.replace("_", "-"), type=number_type(field.annotation),
                            help=field.description)


def task_knobs() -> dict[str, Any]:
    """Every registered task's inference knobs (`Task.inference_model` fields), by name."""
    from stepwise.tasks import task_class, task_names

    return {name: field for task in task_names() if (model := getattr(task_class(task), "inference_model", None))
            for name, field in model.model_fields.items()}


def number_type(annotation: Any) -> type:
    inner = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    return inner[0] if inner[0] in (int, float) else str


def predict_options(args: argparse.Namespace) -> Any:
    from stepwise.predictor import PredictOptions

    return PredictOptions.from_args(args)


def warn_steps(predictor: Any, args: argparse.Namespace) -> None:
    if args.steps is not None and args.steps > 1 and not getattr(predictor, "is_refiner", True):
        print(f"stepwise: note: {args.run} is a single-step model (trained without --refine-steps); "
              f"--steps {args.steps} has no effect", file=sys.stderr)


def open_run(path: str, args: argparse.Namespace | None = None) -> Any:
    """The run's (or export's) task from its metadata: enough to check inputs and options before loading."""
    from stepwise.rundir import model_meta
    from stepwise.tasks import task_class, task_from_meta, task_names

    task = task_from_meta(model_meta(path))
    knobs = knobs_given(args)
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


def knobs_given(args: argparse.Namespace | None) -> dict[str, Any]:
    return {k: v for k in task_knobs() if (v := getattr(args, k, None)) is not None}


def load_predictor(args: argparse.Namespace) -> Any:
    """The predictor on the chosen backend; --threads sets ONNX Runtime's or (for this process) torch's."""
    from stepwise.predictor import load_in_process

    predictor = load_in_process(args.run, backend=args.backend, threads=args.threads)
    for name, value in knobs_given(args).items():
        setattr(predictor.task, name, value)
    return predictor


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from stepwise.llm.cli import check_llm_flags, llm_predictor, llm_summary, wants_llm
    from stepwise.recipes.evaluate import evaluate, read_labeled

    options = predict_options(args)
    check_llm_flags(args)
    check_output_path(args.plot, "--plot")
    check_output_path(args.trace, "--trace", inputs=[args.data])
    examples = read_labeled(open_run(args.run, args), args.data, **read_options(args))
    predictor = load_predictor(args)
    predictor = llm_predictor(predictor, args) if wants_llm(args) else predictor
    warn_steps(predictor, args)
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

    options = predict_options(args)
    check_llm_flags(args)
    check_output_path(args.output, "--output", inputs=[args.input])
    check_output_path(args.trace, "--trace", inputs=[args.input])
    task = open_run(args.run, args)
    args.output_format = args.output_format or task.output_formats[0]
    task.check_output_format(args.output_format)
    examples = read_inputs(task, args.input, **read_options(args))
    predictor = load_predictor(args)
    predictor = llm_predictor(predictor, args) if wants_llm(args) else predictor
    warn_steps(predictor, args)
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


HANDLERS = {"evaluate": _cmd_evaluate, "predict": _cmd_predict}
