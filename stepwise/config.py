"""Validated training configuration: defaults < YAML file < command-line flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from stepwise.errors import StepwiseError


class TrainConfig(BaseModel):
    """Every training option; each is also a `--flag` of `stepwise train` and a key in `--config`."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), populate_by_name=True, allow_inf_nan=False)

    task: Optional[str] = Field(None, description="classify (a label per text), tag (a tag per word) or edit "
                                "(correct sentences); default: tag for CoNLL files (.conll/.bio/.iob/.iobes), else "
                                "classify")
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
    rl_passes: int = Field(1, ge=1, le=10, description="rl, edit: the reward scores the sentence after this many "
                           "passes: the sampled pass, then the current model's greedy passes (1: the sampled pass "
                           "alone)")
    own_outputs: float = Field(0.0, ge=0, le=1, description="edit: share of training batches whose sentences are "
                               "replaced by the model's own one-pass output (tagged against the same target), so "
                               "later passes learn to fix what the model leaves; 0 = off")
    small_data: bool = Field(True, description="classify, up to 6,000 training texts: start the head from a "
                             "linear probe of the encoder (docs/guides/classify.md#small-data)")
    augment: float = Field(0.0, ge=0, le=4, description="classify, tag: add a noisy copy of every training example "
                           "(learner noise as in `stepwise noise`, its rates times this; tag: spelling and casing "
                           "only, so tags stay aligned); 0 = off")
    repair: bool = Field(True, description="tag: turn an I- tag after O or another type into B- (counted)")
    casing: Optional[bool] = Field(None, description="tag, edit: add a learned word-shape embedding (default: on)")
    strict: bool = Field(False, description="tag: seqeval strict mode (entities must be well-formed)")
    doc_context: Optional[Literal["head", "model"]] = Field(
        None, description="tag: a second step that sees, per word, the step-1 tags of the same word form elsewhere "
        "in its document (CoNLL -DOCSTART- documents). head: step 1 is the plain tagger, step 2 a small head "
        "fitted on the dev split's step-1 probabilities after training (seconds; dev needs documents). model: "
        "the tagger itself reads a document input, trained on out-of-fold step-1 tags of 2 fold taggers")
    doc_fold_epochs: Optional[float] = Field(None, gt=0, description="tag, --doc-context model: epochs of the two fold "
                                             "taggers that make the out-of-fold step-1 tags (default: --epochs)")

    pool: Optional[str] = Field(None, description="retrieve: the passages dev and test queries are ranked among "
                                "(JSONL id + passage/answer, TSV id<TAB>text, or one per line; default: every "
                                "distinct passage of the given splits)")
    hard_negatives: int = Field(0, ge=0, le=64, description="retrieve: mine this many near-miss passages per "
                                "training query with the starting model; each step adds one as a negative (0 = "
                                "in-batch negatives only)")
    retrieval_temperature: Optional[float] = Field(None, gt=0, le=1, description="retrieve: a fixed softmax "
                                                   "temperature (default: learned, starting at 0.05)")

    items: Optional[str] = Field(None, description="recommend: the item texts (id column, then text fields: "
                                 "title, year, genres, description...)")
    min_rating: Optional[float] = Field(None, description="recommend: keep only interactions rated at least this "
                                        "(default: every row is an interaction)")
    history_items: int = Field(10, ge=1, le=200, description="recommend: the user tower reads this many most recent "
                               "items, newest first, cut at --max-length tokens")
    item_ids: bool = Field(False, description="recommend: hybrid item tower, a learned id vector added to the text "
                           "for items seen in training (cold items: text alone); off by default: on MovieLens dev "
                           "the text tower alone ranked better, and far better on cold items (docs/results.md)")
    sampled_negatives: int = Field(64, ge=0, le=4096, description="recommend: items drawn uniformly per batch as "
                                   "extra negatives, beside the in-batch ones (both logQ-corrected)")
    examples_per_user: int = Field(1, ge=1, description="recommend: training examples per user, their most recent "
                                   "history prefixes (the CPU budget)")
    cold_items: float = Field(0.0, ge=0, lt=1, description="recommend: share of the catalogue (seeded) removed from "
                              "training, to measure cold-start items on the users whose test item is one of them")

    @field_validator("doc_context", mode="before")
    @classmethod
    def _doc_context_flag(cls, value: Any) -> Any:
        """Configs written before the head existed say true/false: true was the document-input model."""
        return {True: "model", False: None}.get(value, value) if isinstance(value, bool) else value

    def dev_metric(self, task_default: str) -> str:
        """The dev metric that picks the best checkpoint: --metric, else the rl reward, else the task's."""
        if self.metric:
            return self.metric
        return "reward" if self.reward and self.reward != "loglik" else task_default

    def read_options(self) -> dict[str, Any]:
        """The reader keywords these options imply (format and columns)."""
        return {"fmt": self.input_format, "text_column": self.text_column, "label_column": self.label_column,
                "tag_column": self.tag_column, "pair_column": self.pair_column}


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


def build_config(values: dict[str, Any], source: str = "options") -> TrainConfig:
    """Validate merged options; the first problem becomes one line naming the option in user terms."""
    try:
        return TrainConfig(**values)
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

        close = difflib.get_close_matches(name, list(TrainConfig.model_fields), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"{hint}remove it; `stepwise train --help` lists the options"
    return "see `stepwise train --help`"


def save_config(config: TrainConfig, path: str | Path) -> None:
    from stepwise.files import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config.model_dump(), sort_keys=False))
