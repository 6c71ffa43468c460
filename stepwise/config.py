"""Validated training configuration: defaults < YAML file < command-line flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, create_model

from stepwise.errors import StepwiseError

OPTION_RULES = ConfigDict(extra="forbid", protected_namespaces=(), populate_by_name=True, allow_inf_nan=False)


class TaskOptions(BaseModel):
    """A task's own training options (`Task.options_model`): composed into TrainConfig beside the shared ones,
    so each is also a `--flag` of `stepwise train` and a key in `--config`, refused for the other tasks."""

    model_config = OPTION_RULES


class SharedConfig(BaseModel):
    """The training options every task shares; TrainConfig adds each registered task's own (`train_config`)."""

    model_config = OPTION_RULES

    task: Optional[str] = Field(None, description="the task (default: the one the --train file implies)")
    train: str = Field(..., validation_alias=AliasChoices("train", "interactions"),
                       description="training file (.tsv/.csv/.jsonl, or CoNLL for tag; recommend: the interaction "
                       "log user, item, timestamp[, rating], also spelled --interactions)")
    dev: Optional[str] = Field(None, description="validation file; default: split from --train (7:2:1)")
    test: Optional[str] = Field(None, description="test file, scored once at the end")
    out: str = Field(..., description="run directory to write")
    model: Optional[str] = Field(None, description="pretrained encoder directory (default: bundled MiniLM)")
    input_format: Optional[Literal["tsv", "csv", "jsonl", "conll"]] = Field(
        None, validation_alias=AliasChoices("input_format", "format"),
        description="input format (default: from the extension; the old spelling --format is accepted)")
    text_column: Optional[Union[int, str]] = Field(None, description="text column name or 0-based index")
    label_column: Optional[Union[int, str]] = Field(None, description="label column name or 0-based index")
    pair_column: Optional[Union[int, str]] = Field(None, description="classify: a second text column (text pairs, "
                                                   "e.g. entailment); the encoder sees it as segment B")
    tag_column: Optional[int] = Field(None, description="CoNLL tag column, 0-based (default: last)")
    train_target: Optional[list[str]] = Field(None, description="edit: corrected sentences parallel to --train, "
                                              "one per line (several files: several references)")
    dev_target: Optional[list[str]] = Field(None, description="edit: corrected sentences parallel to --dev")
    test_target: Optional[list[str]] = Field(None, description="edit: corrected sentences parallel to --test")

    epochs: float = Field(3.0, gt=0, description="passes over the training data")
    max_steps: Optional[int] = Field(None, gt=0, description="optimizer steps; overrides --epochs")
    batch_size: int = Field(32, gt=0, description="examples per optimizer micro-batch")
    lr: float = Field(1e-4, gt=0, description="peak learning rate")
    weight_decay: float = Field(0.01, ge=0, description="decoupled weight decay (not on biases/LayerNorm)")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="share of steps spent warming up")
    schedule: Literal["linear", "cosine", "constant"] = Field("linear", description="decay after warmup")
    optimizer: Literal["adamw", "sgd"] = Field("adamw", description="optimizer")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    grad_accum: int = Field(1, gt=0, description="micro-batches per optimizer step")
    clip: Optional[float] = Field(1.0, gt=0, description="max gradient norm (omit to disable)")
    dropout: Optional[float] = Field(None, ge=0, lt=1, description="override encoder and head dropout")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="label smoothing for cross-entropy")
    eval_every: Optional[int] = Field(None, gt=0, description="evaluate every N steps (default: each epoch)")
    patience: Optional[int] = Field(2, gt=0, description="stop after N evaluations without improvement")
    metric: Optional[str] = Field(None, description="dev metric for early stopping and best checkpoint")
    seed: int = Field(0, description="random seed")
    resume: bool = Field(False, description="continue an interrupted run in --out")
    overwrite: bool = Field(False, description="replace the run in --out (its stepwise files only) and start over")
    max_length: int = Field(256, gt=4, le=512, description="max tokens per sequence")
    eval_batch_size: int = Field(64, gt=0, description="batch size for evaluation and prediction")
    freeze_embeddings: bool = Field(False, description="keep the encoder's word-embedding matrix as pretrained: "
                                    "10-20% faster training on the CPU, 0.3-0.5 pt lower on SST-2 "
                                    "(docs/results.md)")
    embedding_update: Literal["used_rows", "dense"] = Field(
        "used_rows", description="used_rows: train only the word-embedding rows the training data uses, with "
        "the same result as dense (the others get AdamW's weight decay as one factor), 7-9% faster per CPU step")
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="auto: bf16 autocast when a few timed "
                                                       "steps show it faster on this host (cached), else fp32")
    group_by_length: bool = Field(True, description="batch sentences of similar length (less padding)")
    group_pool: int = Field(50, gt=0, description="length grouping: batches per length-sorted pool of shuffled "
                            "examples (smaller: batches closer to random, more padding)")
    loss_weighting: Literal["batch", "token"] = Field(
        "batch", description="'batch': mean over each batch's labels; 'token': every labeled token weighs the same "
        "in every batch (sum / average labels per batch), so length-grouped batches weigh tokens like random ones")
    threads: Optional[int] = Field(None, gt=0, description="torch threads (default: the cores other processes "
                                   "leave free, counted at the start and at every log step)")
    quiet: bool = Field(False, description="no progress bar")
    refine_steps: int = Field(1, ge=1, le=8, description="train a refiner y_t = f(x, y_t-1) used for up to T "
                              "steps at inference (1 = single-step model; edit: passes, default 5)")
    refine_noise: float = Field(0.1, ge=0, lt=1, description="refiner: share of previous labels corrupted in "
                                "training")
    init_from: Optional[str] = Field(None, description="start from this run's model (rl, or continued training)")
    reward: Optional[str] = Field(None, description="rl: accuracy, entity_f1, bleu, rouge_l, loglik or "
                                  "module:function (setting it switches the objective to REINFORCE)")
    baseline: Literal["self-critical", "moving-average"] = Field("self-critical", description="rl: baseline")
    entropy_coef: float = Field(0.01, ge=0, description="rl: entropy bonus weight")
    kl_coef: float = Field(0.05, ge=0, description="rl: KL penalty weight toward the starting policy")
    ce_coef: float = Field(0.0, ge=0, description="rl: weight of the cross-entropy on gold labels mixed into "
                           "the policy-gradient loss (0: pure REINFORCE)")
    small_data: bool = Field(True, description="classify, up to 6,000 training texts: start the head from a "
                             "linear probe of the encoder (docs/guides/classify.md#small-data)")
    augment: float = Field(0.0, ge=0, le=4, description="classify, tag: add a noisy copy of every training example "
                           "(learner noise as in `stepwise noise`, its rates times this; tag: spelling and casing "
                           "only, so tags stay aligned); 0 = off")
    def dev_metric(self, task_default: str) -> str:
        """The dev metric that picks the best checkpoint: --metric, else the rl reward, else the task's."""
        if self.metric:
            return self.metric
        return "reward" if self.reward and self.reward != "loglik" else task_default

    def read_options(self) -> dict[str, Any]:
        """The reader keywords these options imply (format and columns)."""
        return {"fmt": self.input_format, "text_column": self.text_column, "label_column": self.label_column,
                "tag_column": self.tag_column, "pair_column": self.pair_column}


_COMPOSED: dict[tuple, type[SharedConfig]] = {}


def train_config() -> type[SharedConfig]:
    """TrainConfig: the shared options plus the options model of every registered task, in registry order.

    Built again when a task is registered (a task of your own brings its flags with it). Two tasks may share
    an option (a tagger's and an editor's word shape) by sharing the model that declares it; two different
    declarations of one name are refused.
    """
    from stepwise.tasks import task_class, task_names

    models: list[type[BaseModel]] = []
    for name in task_names():
        own = getattr(task_class(name), "options_model", None)
        for model in own.__mro__[::-1] if own is not None else ():
            if issubclass(model, TaskOptions) and model is not TaskOptions and model not in models:
                models.append(model)
    key = tuple(models)
    if key not in _COMPOSED:
        owners: dict[str, type[BaseModel]] = {name: SharedConfig for name in SharedConfig.model_fields}
        for model in models:
            for name in model.__annotations__:
                if name in owners and owners[name] is not model:
                    raise StepwiseError(f"the option {name!r} is declared by both {owners[name].__name__} and "
                                        f"{model.__name__}", fix="declare it once and share that options model")
                owners[name] = model
        # pydantic orders fields from the last base to the first: the shared options come first in --help
        task = (Optional[str], Field(None, description=_task_help(), json_schema_extra={"choices": _task_names}))
        _COMPOSED[key] = create_model("TrainConfig", __base__=(*reversed(models), SharedConfig), __module__=__name__,
                                      __doc__="Every training option: the shared ones and each task's own.", task=task)
    return _COMPOSED[key]


def _task_names() -> list[str]:
    from stepwise.tasks import task_names

    return task_names()


def _task_help() -> str:
    """--task: each registered task in a few words, and which one a file implies without it."""
    from stepwise.tasks import task_class, task_names

    names = task_names()
    described = [f"{n} ({task_class(n).summary})" if getattr(task_class(n), "summary", "") else n for n in names]
    listed = ", ".join(described[:-1]) + f" or {described[-1]}" if len(described) > 1 else described[0]
    claims = [f"{n} for {task_class(n).claims_hint}" for n in names if getattr(task_class(n), "claims_hint", "")]
    return f"{listed}; default: {', '.join([*claims, f'else {names[0]}'])}"


def __getattr__(name: str) -> Any:
    if name == "TrainConfig":  # looked up on use: a task registered later adds its options
        return train_config()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if p.is_dir():
        raise StepwiseError("is a directory, not a YAML file", path=path, fix="check the --config path")
    if not p.is_file():
        raise StepwiseError("config file not found", path=path, fix="check the --config path")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise StepwiseError(f"bytes that are not UTF-8 (byte 0x{raw[err.start]:02x})", path=path,
                            line=raw[: err.start].count(b"\n") + 1, fix="save the config as UTF-8") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise StepwiseError(f"invalid YAML ({getattr(err, 'problem', err)})", path=path,
                            line=None if mark is None else mark.line + 1, fix="fix the YAML syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise StepwiseError("the config must be a mapping of option: value", path=path, line=1)
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def build_config(values: dict[str, Any], source: str = "options") -> SharedConfig:
    """Validate merged options; the first problem becomes one line naming the option in user terms."""
    try:
        return train_config()(**values)
    except ValidationError as err:
        raise StepwiseError(describe(err.errors()[0], values), path=None if source == "command line" else source,
                            fix=_fix(err.errors()[0])) from None


def describe(error: dict[str, Any], values: dict[str, Any]) -> str:
    """Pydantic's error in the words of a flag: '--lr must be greater than 0 (got -0.0001)'."""
    name = str(error["loc"][0]) if error["loc"] else "config"
    flag = "--" + name.replace("_", "-")
    kind, ctx = error["type"], error.get("ctx", {})
    got = f" (got {values[name]!r})" if name in values else ""
    if kind == "extra_forbidden":
        return f"unknown option {name!r}"
    if kind == "missing":
        return f"{flag} is required"
    bounds = {"greater_than": "greater than {gt}", "greater_than_equal": "at least {ge}",
              "less_than": "less than {lt}", "less_than_equal": "at most {le}"}
    if kind in bounds:
        return f"{flag} must be {bounds[kind].format(**{k: f'{v:g}' for k, v in ctx.items()})}{got}"
    if kind == "literal_error":
        return f"{flag} must be one of {ctx.get('expected', '')}{got}"
    if kind in ("int_parsing", "int_from_float", "int_type"):
        return f"{flag} must be a whole number{got}"
    if kind in ("float_parsing", "float_type"):
        return f"{flag} must be a number{got}"
    if kind == "finite_number":
        return f"{flag} must be a finite number{got}"
    if kind in ("bool_parsing", "bool_type"):
        return f"{flag} must be true or false{got}"
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{flag}: {message}{got}"


def _fix(error: dict[str, Any]) -> str:
    name = str(error["loc"][0]) if error["loc"] else ""
    if error["type"] == "extra_forbidden":
        import difflib

        close = difflib.get_close_matches(name, list(train_config().model_fields), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"{hint}remove it; `stepwise train --help` lists the options"
    return "see `stepwise train --help`"


def with_defaults(cfg: Any, defaults: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """A recipe's own defaults for every option the user did not set (an explicit --max-steps keeps --epochs
    unset); returns the config and which defaults applied, for results.json."""
    chosen = {k: v for k, v in defaults.items() if k not in cfg.model_fields_set
              and not (k == "epochs" and "max_steps" in cfg.model_fields_set)}
    return cfg.model_copy(update=chosen), chosen


def refuse_unused(cfg: Any, names: tuple[str, ...], noun: str, why: dict[str, str] | None = None) -> None:
    """One line for the first shared-loop option a recipe does not read that was set to a non-default value."""
    for name in names:
        if getattr(cfg, name) != type(cfg).model_fields[name].default:
            flag = "--" + name.replace("_", "-")
            raise StepwiseError(f"{flag} is not available for {noun} runs{(why or {}).get(name, '')}",
                                fix=f"drop {flag}")


def save_config(config: SharedConfig, path: str | Path) -> None:
    from stepwise.files import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config.model_dump(), sort_keys=False))
