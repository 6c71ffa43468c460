"""Numbers given as options are finite, or the option is refused in one line.

NaN passes every range check written as a comparison (`nan <= 0` is False) and ±inf passes the open
ones, so finiteness is checked first and in one place, for every verb: the CLI runs every parsed
float option through `check_finite`, and the Python entry points (TrainConfig with `allow_inf_nan=False`,
ServeSettings, search, noise, monitor, distill, prune, evaluate) run their numeric arguments through it.
The range checks that follow then compare finite numbers only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from stepwise.errors import StepwiseError


def check_finite(values: Mapping[str, Any], *, source: str | None = None) -> None:
    """Each float in `values` (option name → value; lists and dicts are looked into) is finite.

    A name is an option's Python name (`timeout_s`), shown as its flag (`--timeout-s`)."""
    for name, value in values.items():
        _check("--" + str(name).replace("_", "-"), value, source)


def finite(value: float, flag: str) -> float:
    """`value` if finite, else the one-line error naming `flag`."""
    _check(flag, value, None)
    return value


def _check(flag: str, value: Any, source: str | None) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise StepwiseError(f"{flag} must be a finite number, got {value!r}", path=source,
                            fix=f"pass {flag} an ordinary number (nan and inf are not accepted)")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check(f"{flag} {key}", item, source)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check(flag, item, source)
