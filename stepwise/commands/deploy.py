"""export and serve: a run made deployable (ONNX, int8, Hugging Face) and served over HTTP."""

from __future__ import annotations

import argparse
import json
from typing import Any

from stepwise.options import add_flags


def add_parsers(sub: Any, fmt: Any) -> None:
    from stepwise.tasks.retrieve.cli import add_answer_flags

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

    p_serve = sub.add_parser("serve", help="an HTTP service for a run or an exported directory (FastAPI/uvicorn)",
                             formatter_class=fmt)
    p_serve.add_argument("run", help="a run directory, a directory written by `stepwise export`, or an index "
                         "written by `stepwise index` (served as POST /v1/answer); a recommender run is served as POST "
                         "/v1/recommend")
    from stepwise.serve.settings import ServeSettings

    add_flags(p_serve, ServeSettings)  # the settings model declares every serve option once
    add_answer_flags(p_serve, serving=True)
    p_serve.add_argument("--no-access-log", dest="access_log", action="store_false", help="no line per request")


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


def _cmd_serve(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or Ctrl-C; both drain in-flight requests and exit 0."""
    from stepwise.recipes.serve import serve
    from stepwise.serve.settings import ServeSettings

    settings = ServeSettings.from_args(args)
    answer = {k: v for k in ("rerank", "intent", "encoder", "k", "rerank_k")
              if (v := getattr(args, k, None)) is not None}  # set only when serving an index
    serve(args.run, settings, access_log=args.access_log, answer=answer)
    return 0


HANDLERS = {"export": _cmd_export, "serve": _cmd_serve}
