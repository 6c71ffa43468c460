"""One options mechanism for every verb: each option is declared once, in a pydantic model (type, default,
limits, help), and both doors validate through that model in the same words: the CLI, whose flags are
generated from it (`add_flags`), and the Python API, which builds the model (scikit-learn's
`_param_validation` idea). A bad value is one StepwiseError naming the flag: "--max-batch must be greater
than 0 (got 0)".
"""

from __future__ import annotations

import argparse
import types
import typing
from typing import Any, ClassVar

from pydantic import AliasChoices, BaseModel, ConfigDict, ValidationError, model_validator

from stepwise.errors import StepwiseError


class Options(BaseModel):
    """A verb's options. Built from keywords (Python) or from parsed flags (`from_args`); invalid values raise
    one StepwiseError, never pydantic's multi-line ValidationError."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False, protected_namespaces=())
    #: what a refused value's one-line error points to
    fix: ClassVar[str] = "see the verb's --help"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Positional values are taken in field order, as the dataclasses these models replace took them."""
        super().__init__(**dict(zip(type(self).model_fields, args)), **kwargs)

    @model_validator(mode="wrap")
    @classmethod
    def _one_line(cls, data: Any, handler: Any) -> Any:
        try:
            return handler(data)
        except ValidationError as err:
            from stepwise.config import describe

            first = err.errors()[0]
            values = data if isinstance(data, dict) else {}
            raise StepwiseError(_range(cls, first, values) or describe(first, values), fix=cls.fix) from None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Any:
        """The options a parsed command line gives (flags left out take the model's defaults)."""
        return cls(**{name: getattr(args, name) for name in cls.model_fields
                      if getattr(args, name, None) is not None})


def _range(model: type[BaseModel], error: dict[str, Any], values: dict[str, Any]) -> str | None:
    """A bound broken on an option bounded on both sides, said as its interval: "--x must be in [0, 1]"."""
    name = str(error["loc"][0]) if error.get("loc") else ""
    field = model.model_fields.get(name)
    if field is None or not error["type"].startswith(("greater_than", "less_than")):
        return None
    bounds = {kind: getattr(m, kind) for m in field.metadata for kind in ("ge", "gt", "le", "lt")
              if type(m).__name__.lower() == kind}
    low = ("[", bounds["ge"]) if "ge" in bounds else ("(", bounds["gt"]) if "gt" in bounds else None
    high = (bounds["le"], "]") if "le" in bounds else (bounds["lt"], ")") if "lt" in bounds else None
    if low is None or high is None:
        return None
    got = f" (got {values[name]!r})" if name in values else ""
    return f"--{name.replace('_', '-')} must be in {low[0]}{low[1]:g}, {high[0]:g}{high[1]}{got}"


def add_flags(parser: argparse.ArgumentParser, model: type[BaseModel], *, skip: tuple[str, ...] = (),
              defaults: bool = True) -> None:
    """One flag per field of `model` (`--max-batch` for max_batch), typed, with its choices and help.

    `defaults=False` leaves every flag's default None (a YAML file may fill what the command line left
    out: `train --config`). A field's `json_schema_extra` may say {"metavar": ..., "flags": [aliases], "choices":
    a function listing them,
    "switch": "--no-x"} (a bool that a `--no-x` flag turns off, e.g. --no-access-log), "store_true": True
    (a plain switch), "type": str (text the model parses, e.g. a duration), or {"flag": False} (a setting for
    Python callers only).
    """
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if name in skip or extra.get("flag") is False:  # a setting with no flag (Python and config only)
            continue
        flags = ["--" + name.replace("_", "-"), *extra.get("flags", ())]
        if isinstance(field.validation_alias, AliasChoices):
            flags += ["--" + str(a).replace("_", "-") for a in field.validation_alias.choices if a != name]
        annotation = field.annotation
        union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
        inner = [a for a in typing.get_args(annotation) if a is not type(None)] if union else [annotation]
        base = extra.get("type", inner[0])  # e.g. a duration given as text ("1h") and parsed by the model
        plain = not field.is_required() and field.default_factory is None  # a default to show and to pass on
        default = field.default if defaults and plain else None
        text = field.description or ""
        if not defaults and plain and field.default is not None:
            text += f" (default: {field.default})"  # the flag's own default is None: say the model's
        kwargs: dict[str, Any] = {"dest": name, "default": default, "help": text.replace("%", "%%")}
        if "metavar" in extra:
            kwargs["metavar"] = extra["metavar"]
        if field.is_required() and defaults:
            kwargs["required"] = True
        if extra.get("store_true"):  # a plain switch, off by default
            parser.add_argument(*flags, action="store_true", dest=name, help=kwargs["help"])
        elif "switch" in extra:  # on by default; its --no-x flag turns it off
            parser.add_argument(extra["switch"], dest=name, action="store_false", help=kwargs["help"])
        elif len(inner) > 1:  # e.g. a column by name or index: keep the string, the reader decides
            parser.add_argument(*flags, **kwargs)
        elif typing.get_origin(base) is list:
            parser.add_argument(*flags, nargs="+", **{"metavar": "FILE", **kwargs})
        elif base is bool:
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, **kwargs)
        else:
            if "choices" in extra:  # choices known at run time (the registered backends)
                kwargs["choices"] = list(extra["choices"]())
            elif typing.get_origin(base) is typing.Literal:
                kwargs["choices"] = list(typing.get_args(base))
            elif base in (int, float):
                kwargs["type"] = base
                kwargs.setdefault("metavar", base.__name__.upper() if not defaults else None)
                if kwargs["metavar"] is None:
                    del kwargs["metavar"]
            parser.add_argument(*flags, **kwargs)
