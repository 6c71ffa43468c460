"""The search space: which TrainConfig options a search samples, and from what ranges.

A space maps option names to one of

    {low: 1e-5, high: 1e-3, log: true}     a number in [low, high] (log-uniform with log: true)
    {low: 1, high: 4, step: 1}             every step-th number from low to high
    {choices: [16, 32, 64]}                one of the listed values

The names are TrainConfig fields (the `stepwise train` flags, with underscores). Every bound and
choice is checked against the option's own validation, so a bad space fails before any trial runs,
in one line naming the file and line.
"""

from __future__ import annotations

import difflib
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stepwise.config import describe, load_yaml, train_config
from stepwise.errors import StepwiseError

# Options that define the job rather than tune it: given once, the same in every trial (a task's own such option
# says so itself: json_schema_extra={"searched": False}).
NOT_SEARCHED = frozenset({
    "task", "train", "dev", "test", "out", "model", "input_format", "text_column", "label_column", "pair_column",
    "tag_column", "train_target", "dev_target", "test_target", "resume", "overwrite", "quiet", "threads",
    "init_from", "reward", "metric", "precision", "eval_batch_size", "eval_every", "seed"})
SPEC_KEYS = frozenset({"low", "high", "log", "step", "choices"})


@dataclass(frozen=True)
class Param:
    """One searched option: a range (low/high, optional log or step) or a list of choices."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] | None = None

    def suggest(self, trial: Any) -> Any:
        """The value an Optuna trial draws for this option."""
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if _kind(self.name) is int:
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def spec(self) -> dict[str, Any]:
        """The YAML form, e.g. {'low': 1e-05, 'high': 0.001, 'log': True}."""
        if self.choices is not None:
            return {"choices": list(self.choices)}
        out: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out


# The default space, centred on the defaults `stepwise train` uses (lr 1e-4, 3 epochs, batch 32, 10% warmup,
# weight decay 0.01, the encoder's own dropout 0.1, no label smoothing), plus each task's `search_space`.
DEFAULT_SPACE: dict[str, dict[str, Any]] = {
    "lr": {"low": 2e-5, "high": 5e-4, "log": True},
    "epochs": {"low": 1, "high": 4, "step": 1},
    "batch_size": {"choices": [16, 32, 64]},
    "warmup_ratio": {"low": 0.0, "high": 0.2},
    "weight_decay": {"low": 0.0, "high": 0.1},
    "dropout": {"low": 0.0, "high": 0.2},
    "label_smoothing": {"low": 0.0, "high": 0.1},
}


def default_space(task: str, fixed: dict[str, Any] | None = None) -> list[Param]:
    """The documented default space for a task, less the options the user fixed (a flag or --config key)."""
    from stepwise.tasks import task_class

    specs = {**DEFAULT_SPACE, **task_class(task).search_space}  # the task's own dimensions (a tagger's casing)
    fixed = fixed or {}
    return [parse_param(name, spec, "default search space") for name, spec in specs.items() if name not in fixed]


def load_space(path: str | Path, fixed: dict[str, Any] | None = None) -> list[Param]:
    """Read and validate a space file; an option both fixed and searched is refused."""
    data = load_yaml(path)
    lines = _key_lines(path)
    if not data:
        raise StepwiseError("the search space is empty", path=path, line=1,
                            fix="name at least one option, e.g. lr: {low: 1.0e-5, high: 1.0e-3, log: true}")
    params = []
    for name, spec in data.items():
        line = lines.get(name)
        try:
            params.append(parse_param(name, spec, str(path)))
        except StepwiseError as err:
            raise StepwiseError(err.problem, path=path, line=line, fix=err.fix) from None
        if fixed and name in fixed:
            raise StepwiseError(f"{name!r} is both fixed (--{name.replace('_', '-')} or --config) and searched",
                                path=path, line=line, fix="drop one of the two")
    return params


def parse_param(name: str, spec: Any, source: str) -> Param:
    """One option's spec → Param, or a one-line StepwiseError (without path: the caller adds it)."""
    if name not in train_config().model_fields:
        close = difflib.get_close_matches(name, list(train_config().model_fields), n=1)
        raise StepwiseError(f"unknown option {name!r}", fix=(f"did you mean {close[0]!r}? " if close else "")
                            + "use the names of `stepwise train --help` with underscores")
    extra = train_config().model_fields[name].json_schema_extra
    if name in NOT_SEARCHED or _kind(name) is None or (isinstance(extra, dict) and extra.get("searched") is False):
        raise StepwiseError(f"{name!r} cannot be searched", fix=f"give it as a flag (--{name.replace('_', '-')}); "
                            "it is then the same in every trial")
    if not isinstance(spec, dict):
        raise StepwiseError(f"{name}: expected {{low: .., high: ..}} or {{choices: [..]}}, got {spec!r}",
                            fix="e.g. lr: {low: 1.0e-5, high: 1.0e-3, log: true}")
    unknown = sorted(set(map(str, spec)) - SPEC_KEYS)
    if unknown:
        raise StepwiseError(f"{name}: unknown key {unknown[0]!r}", fix="use low, high, log, step or choices")
    if _kind(name) in (int, float):
        spec = {k: _number(v) for k, v in spec.items()}
        if isinstance(spec.get("choices"), list):
            spec["choices"] = [_number(v) for v in spec["choices"]]
    if "choices" in spec:
        return _choices(name, spec)
    return _range(name, spec)


def _number(value: Any) -> Any:
    """'1e-5' → 1e-05: YAML reads a number without a dot in its mantissa as a string."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _choices(name: str, spec: dict[str, Any]) -> Param:
    if set(spec) != {"choices"}:
        raise StepwiseError(f"{name}: choices cannot be combined with low/high/log/step", fix="keep one form")
    choices = spec["choices"]
    if not isinstance(choices, list) or not choices:
        raise StepwiseError(f"{name}: choices must be a non-empty list, got {choices!r}", fix="e.g. choices: [16, 32]")
    if len(set(map(repr, choices))) != len(choices):
        raise StepwiseError(f"{name}: choices repeat a value", fix="list each value once")
    for value in choices:
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise StepwiseError(f"{name}: choice {value!r} is not a plain value",
                                fix="use numbers, strings or true/false")
        _check_value(name, value)
    return Param(name, choices=tuple(choices))


def _range(name: str, spec: dict[str, Any]) -> Param:
    kind = _kind(name)
    if kind not in (int, float):
        raise StepwiseError(f"{name}: a {kind.__name__ if kind else 'non-numeric'} option needs choices",
                            fix=f"e.g. {name}: {{choices: [...]}}")
    for key in ("low", "high"):
        if key not in spec:
            raise StepwiseError(f"{name}: missing {key}", fix="give both low and high (or choices)")
    numbers = {k: spec[k] for k in ("low", "high", "step") if spec.get(k) is not None}
    for key, value in numbers.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise StepwiseError(f"{name}: {key} must be a number, got {value!r}",
                                fix="write numbers, e.g. 1.0e-5")
        if kind is int and not float(value).is_integer():
            raise StepwiseError(f"{name}: {key} must be a whole number, got {value!r}", fix=f"{name} is an integer")
    low, high, step = float(spec["low"]), float(spec["high"]), numbers.get("step")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise StepwiseError(f"{name}: log must be true or false, got {log!r}", fix="log: true")
    if low >= high:
        raise StepwiseError(f"{name}: low must be below high (got {low:g} and {high:g})", fix="swap or widen them")
    if log and low <= 0:
        raise StepwiseError(f"{name}: a log range needs low > 0 (got {low:g})", fix="raise low or drop log")
    if step is not None and (step <= 0 or log):
        raise StepwiseError(f"{name}: step must be positive and cannot go with log", fix="drop one of them")
    _check_value(name, low)
    _check_value(name, high)
    return Param(name, low, high, log, None if step is None else float(step))


def _check_value(name: str, value: Any) -> None:
    """The option's own validation (bounds, type) applied to one value of the space."""
    from pydantic import ValidationError

    try:
        train_config()(train="-", out="-", **{name: value})
    except ValidationError as err:
        raise StepwiseError(f"{name}: {describe(err.errors()[0], {name: value})}",
                            fix="keep the space inside the option's range (see `stepwise train --help`)") from None


def _kind(name: str) -> type | None:
    """int, float or bool for a searchable field type; None for anything else."""
    annotation = train_config().model_fields[name].annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    if len(args) != 1:
        return None
    if typing.get_origin(args[0]) is typing.Literal:
        return str
    return args[0] if args[0] in (int, float, bool) else None


def _key_lines(path: str | Path) -> dict[str, int]:
    """1-based line of each top-level key, for error messages."""
    import yaml

    try:
        node = yaml.compose(Path(path).read_text(encoding="utf-8-sig"))
    except (yaml.YAMLError, OSError):
        return {}
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {str(k.value).replace("-", "_"): k.start_mark.line + 1 for k, _ in node.value}


def space_spec(params: list[Param]) -> dict[str, dict[str, Any]]:
    return {p.name: p.spec() for p in params}
