"""The retrieval verbs' command lines: `index`, `mine`, `answer` (a thin layer over the recipes)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from stepwise.errors import StepwiseError


def add_parsers(sub: Any, fmt: Any) -> None:
    p_index = sub.add_parser("index", help="embed passages with a retriever run (or its export) into an index",
                             formatter_class=fmt)
    p_index.add_argument("run", help="a run trained with --task retrieve, or its ONNX export")
    p_index.add_argument("--passages", help="the collection: JSONL id + passage/answer/text, TSV id<TAB>text, "
                         "or one passage per line")
    p_index.add_argument("--add", help="append these passages to the index in --out (same model only)")
    p_index.add_argument("--out", required=True, help="the index directory (written atomically)")
    _add_compute_flags(p_index)
    p_index.add_argument("--json", action="store_true", help="print the summary as one JSON line")

    p_mine = sub.add_parser("mine", help="reranker training pairs from a retriever's near misses (for "
                            "`train --task classify --pair-column text_pair`)", formatter_class=fmt)
    p_mine.add_argument("run", help="a retriever run (or its export)")
    p_mine.add_argument("--pairs", required=True, help="query/passage pairs (as for --task retrieve)")
    p_mine.add_argument("--pool", help="passages the negatives come from (default: the pairs' passages; a larger "
                        "pool lets the reranker learn which answers were ever relevant instead of relevance)")
    p_mine.add_argument("--out", required=True, help="JSONL text / text_pair / label (relevant or other) to write")
    p_mine.add_argument("--negatives", type=int, default=3, help="mined passages per query")
    p_mine.add_argument("--skip", type=int, default=0, help="leave out this many top-ranked other passages (near "
                        "duplicates of the answer)")
    p_mine.add_argument("--threads", type=int, help="inference threads (default: the cores other processes leave "
                        "free)")
    p_mine.add_argument("--json", action="store_true", help="print the summary as one JSON line")

    p_answer = sub.add_parser("answer", help="answer queries from an index: retrieve, rerank, answer or abstain",
                              formatter_class=fmt)
    p_answer.add_argument("index", help="an index written by `stepwise index`")
    p_answer.add_argument("--input", help="queries, one per line (- for stdin); JSONL out, one record per line")
    p_answer.add_argument("--output", help="write here instead of stdout (atomically)")
    add_answer_flags(p_answer)
    p_answer.add_argument("--dev", help="calibrate: in-scope query/passage pairs whose passages the index holds")
    p_answer.add_argument("--oos-dev", help="calibrate: out-of-scope queries, one per line")
    p_answer.add_argument("--target-precision", type=float, default=0.95,
                          help="calibrate: the share of abstentions that must be out-of-scope queries on dev")
    _add_compute_flags(p_answer)
    p_answer.add_argument("--json", action="store_true", help="calibration: print its report as one JSON line")


def add_answer_flags(parser: argparse.ArgumentParser, serving: bool = False) -> None:
    """The answer pipeline's options (also `serve INDEX`'s: there they apply to an index only)."""
    where = "an index: " if serving else ""
    unset: dict[str, Any] = {"default": argparse.SUPPRESS} if serving else {}
    parser.add_argument("--rerank", help=f"{where}a reranker run: a text-pair classifier trained on `stepwise mine` "
                        "output", **unset)
    parser.add_argument("--intent", help=f"{where}an intent classifier run (query → category)", **unset)
    parser.add_argument("--encoder", help=f"{where}embed queries with this run or export of the index's model "
                        "(default: the one that built the index), e.g. its int8 export", **unset)
    parser.add_argument("--k", type=int, help=f"{where}answers per query", **(unset or {"default": 5}))
    parser.add_argument("--rerank-k", type=int, help=f"{where}candidates the reranker reads per query",
                        **(unset or {"default": 20}))


def _add_compute_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=["auto", "torch", "onnx"], default="auto",
                        help="auto: ONNX Runtime for an exported directory, torch for a run")
    parser.add_argument("--threads", type=int, help="inference threads (default: the cores other processes leave "
                        "free)")
    parser.add_argument("--batch-size", type=int, default=64, help="texts per forward pass")


def _positive(args: argparse.Namespace, *names: str) -> None:
    for name in names:
        value = getattr(args, name, None)
        if value is not None and value < 1:
            flag = "--" + name.replace("_", "-")
            raise StepwiseError(f"{flag} must be at least 1, got {value}", fix=f"e.g. {flag} 2")


def cmd_index(args: argparse.Namespace) -> int:
    from stepwise.tasks.retrieve.indexing import build_index

    _positive(args, "threads", "batch_size")
    summary = build_index(args.run, passages=args.passages, out=args.out, add=args.add, backend=args.backend,
                          threads=args.threads, batch_size=args.batch_size)
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"index {summary['out']}: {summary['passages']} passages ({summary['added']} embedded, "
              f"{summary['passages_per_s']}/s), {summary['search']} search, model {summary['model']}")
    return 0


def cmd_mine(args: argparse.Namespace) -> int:
    from stepwise.tasks.retrieve.mine import mine

    _positive(args, "threads")
    summary = mine(args.run, pairs=args.pairs, out=args.out, pool=args.pool, negatives=args.negatives,
                   skip=args.skip, threads=args.threads)
    print(json.dumps(summary) if args.json else f"{summary['lines']} lines ({summary['pairs']} queries, "
          f"{summary['negatives_per_query']} mined negatives each) written to {summary['out']}")
    return 0


def cmd_answer(args: argparse.Namespace) -> int:
    from stepwise.files import atomic_write_text
    from stepwise.places import FILE, check_output
    from stepwise.tasks.retrieve.answer import calibrate, open_answerer
    from stepwise.tasks.retrieve.data import read_pairs, read_queries

    _positive(args, "threads", "batch_size", "k", "rerank_k")
    calibrating = args.dev is not None or args.oos_dev is not None
    if calibrating and (args.dev is None or args.oos_dev is None):
        raise StepwiseError("calibration needs both --dev (in-scope pairs) and --oos-dev (out-of-scope queries)",
                            fix="give both, or neither")
    if not 0 < args.target_precision <= 1:
        raise StepwiseError(f"--target-precision must be in (0, 1], got {args.target_precision}", fix="e.g. 0.95")
    if not calibrating and args.input is None:
        raise StepwiseError("nothing to do: give --input (queries to answer) and/or --dev with --oos-dev (calibrate)",
                            fix="e.g. stepwise answer INDEX --input queries.txt")
    if args.output:
        check_output(args.output, "--output", FILE, inputs=[args.index])
    dev = read_pairs(args.dev) if calibrating else None
    oos = [q for q in read_queries(args.oos_dev) if q] if calibrating else None
    queries = read_queries(args.input) if args.input is not None else None
    answerer = open_answerer(args.index, encoder=args.encoder, rerank=args.rerank, intent=args.intent, k=args.k,
                             rerank_k=args.rerank_k, backend=args.backend, threads=args.threads,
                             batch_size=args.batch_size, calibrated=not calibrating)
    if calibrating:
        report = calibrate(answerer, dev, oos, args.target_precision, args.dev)
        print(json.dumps(report) if args.json else _calibration_line(report), file=sys.stderr if queries else
              sys.stdout)
    if queries is None:
        return 0
    text = "".join(json.dumps(r) + "\n" for r in answerer.answer(queries))
    if args.output:
        atomic_write_text(args.output, text)
    else:
        sys.stdout.write(text)
    return 0


def _calibration_line(report: dict[str, Any]) -> str:
    dev = report["dev"]
    line = (f"calibrated: abstain below {report['threshold']:.4f} ({report['scorer']['kind']} score); on dev: "
            f"out-of-scope AUROC {dev['auroc']:.3f}, {100 * dev['oos_recall']:.1f}% of out-of-scope queries "
            f"abstained, abstention precision {dev['abstention_precision']}, in-scope R@1 "
            f"{100 * dev['recall@1']:.1f} → {100 * dev['recall@1_after_abstention']:.1f}; R@1 by step: "
            + " → ".join(f"{s['step']} {100 * s['recall@1']:.1f}" for s in dev["steps"]))
    if "intent" in report:
        intent = report["intent"]
        line += (f"; intent: accuracy {intent['in_scope_accuracy']}, out-of-scope AUROC {intent['auroc']:.3f}, "
                 f"P/R/F1 {intent['oos_precision']}/{intent['oos_recall']}/{intent['oos_f1']}")
    return line


HANDLERS = {"index": cmd_index, "mine": cmd_mine, "answer": cmd_answer}
