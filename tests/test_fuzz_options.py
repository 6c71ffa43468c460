"""Property-based fuzzing of the verbs' numeric and string options (issue 34, deliverable 3a).

Every value — NaN, ±inf, huge, negative zero, empty, garbage, a non-UTF-8 argument — ends in success or in
exit 2 with one line; never a traceback or exit 1. And a value that is not a finite number is refused by
name: it never slips past the option checks to fail later for another reason (or not at all).
Derandomized and bounded (about 10 s in all), so `make test` stays fast and a failure reproduces.
"""

from __future__ import annotations

import contextlib
import io
import math
import typing
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from stepwise.cli import main  # noqa: E402
from stepwise.errors import StepwiseError  # noqa: E402

FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

SPECIAL = ["nan", "NaN", "inf", "-inf", "Infinity", "1e400", "-1e400", "-0.0", "0", "-0", "1e-400", "", " ", "0x10",
           "1_000", "½", "１", "\udcff", "9" * 40, "-" + "9" * 40, "1e308", "5e-324", "true", "None"]
VALUES = st.one_of(st.sampled_from(SPECIAL), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                   st.integers(-10**25, 10**25).map(str), st.text(max_size=6))


def run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, err.getvalue().strip()


def finite(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def check_contract(code: int, err: str, flags: dict[str, str] | list[tuple[str, str]], *,
                   ok_codes: tuple[int, ...] = (0, 2)) -> None:
    pairs = list(flags.items()) if isinstance(flags, dict) else flags
    assert code in ok_codes, (code, err, flags)
    assert "Traceback" not in err and "internal error" not in err, (err, flags)
    if code == 2:
        assert err and "\n" not in err, (err, flags)
        named = any(flag in err for flag, _ in pairs)
        # a value that is not a finite number is refused by its own name, never passed on
        assert named or all(finite(v) for _, v in pairs), (err, flags)


def numeric_fields() -> list[str]:
    from stepwise.config import TrainConfig

    names = []
    for name, field in TrainConfig.model_fields.items():
        args = [a for a in typing.get_args(field.annotation) if a is not type(None)] or [field.annotation]
        if len(args) == 1 and args[0] in (int, float):
            names.append(name)
    return names


NUMERIC = numeric_fields()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fuzz")
    (root / "train.tsv").write_text("".join(f"{w} film\t{y}\n" for w, y in [("good", "pos"), ("bad", "neg")] * 5))
    (root / "clean.txt").write_text("the cat sat on the mat .\nshe has two dogs .\n")
    return {"root": root, "train": root / "train.tsv", "clean": root / "clean.txt"}


@FUZZ
@given(st.dictionaries(st.sampled_from(NUMERIC), VALUES, min_size=1, max_size=3))
def test_train_numeric_options(files: dict[str, Path], values: dict[str, str]) -> None:
    """Every numeric training option (shared by train, rl, distill, prune, search): refused by name or accepted
    (the run then stops at the missing --model, before anything is written)."""
    flags = {f"--{k.replace('_', '-')}": v for k, v in values.items()}
    out = files["root"] / "run"
    code, err = run(["train", "--train", str(files["train"]), "--out", str(out), "--model",
                     str(files["root"] / "no-model"), *[f"{k}={v}" for k, v in flags.items()]])
    check_contract(code, err, flags, ok_codes=(2,))
    assert not out.exists()


NUMBERS = st.one_of(st.sampled_from([math.nan, math.inf, -math.inf]),
                    st.sampled_from([-0.0, 0, 1e308, 5e-324, 10**20, -1]), st.floats(), st.integers(-10**20, 10**20))


@pytest.mark.parametrize("name", NUMERIC)
@settings(FUZZ, max_examples=12)
@given(value=NUMBERS)
def test_train_config_from_python(name: str, value: float | int) -> None:
    """The Python API validates every numeric option the same way: a TrainConfig holds finite numbers only."""
    from stepwise.config import build_config

    try:
        cfg = build_config({"train": "t.tsv", "out": "o", name: value})
    except StepwiseError as err:
        assert "\n" not in err.message and f"--{name.replace('_', '-')}" in err.message
        return
    assert math.isfinite(getattr(cfg, name)), (name, value)


@FUZZ
@given(st.dictionaries(st.sampled_from(["--scale", "--keep-clean", "--copies", "--seed"]), VALUES, max_size=3),
       st.lists(st.tuples(st.sampled_from(["spelling", "article", "casing", "nosuch", ""]), VALUES), max_size=2))
def test_noise_options(files: dict[str, Path], flags: dict[str, str], rates: list[tuple[str, str]]) -> None:
    out = files["root"] / "pairs.tsv"
    out.unlink(missing_ok=True)
    rate_args = [f"--rate={name}={value}" for name, value in rates]
    code, err = run(["noise", "--input", str(files["clean"]), "--out", str(out), *[f"{k}={v}" for k, v in
                                                                                 flags.items()], *rate_args])
    check_contract(code, err, [*flags.items(), *(("--rate", v) for _, v in rates)])
    if code == 0:
        text = out.read_text(encoding="utf-8")
        assert all(line.count("\t") == 1 for line in text.splitlines()), text
        assert not any(ord(c) < 32 and c not in "\t\n" for c in text)
    else:
        assert not out.exists()


def duration(text: str) -> bool:
    from stepwise.monitor.events import parse_duration

    try:
        parse_duration(text, zero=True)
    except StepwiseError:
        return False
    return True


MONITOR_FLAGS = ["--z", "--min-shift", "--min-count", "--baseline-windows", "--webhook-wait", "--stop-after-idle",
                 "--batch-size", "--window", "--lateness"]


@FUZZ
@given(st.dictionaries(st.sampled_from(MONITOR_FLAGS), VALUES, min_size=1, max_size=3))
def test_monitor_options(files: dict[str, Path], flags: dict[str, str]) -> None:
    """Refused by name, or accepted (the monitor then stops at the missing classifier, before the database)."""
    db = files["root"] / "m.sqlite"
    code, err = run(["monitor", "--classifier", str(files["root"] / "no-run"), "--input", str(files["clean"]),
                     "--db", str(db), *[f"{k}={v}" for k, v in flags.items()]])
    check_contract(code, err, {k: "1" if k in ("--window", "--lateness") and duration(v) else v
                               for k, v in flags.items()}, ok_codes=(2,))
    assert not db.exists()


@FUZZ
@given(st.dictionaries(st.sampled_from(["--steps", "--confidence", "--time-budget-ms", "--keep-bias",
                                        "--min-edit-prob", "--llm-timeout", "--shots", "--llm-retries"]), VALUES,
                       min_size=1, max_size=3))
def test_predict_options(files: dict[str, Path], flags: dict[str, str]) -> None:
    code, err = run(["predict", str(files["root"] / "no-run"), "--input", str(files["clean"]), "--llm",
                     "http://127.0.0.1:9", *[f"{k}={v}" for k, v in flags.items()]])
    check_contract(code, err, flags, ok_codes=(2,))


SERVE_FLOATS = {"max_wait_ms", "timeout_s", "graceful_s"}
SERVE_INTS = {"port", "max_batch", "sub_batch", "max_text_chars", "max_items", "max_body_bytes", "max_queue",
              "workers", "threads"}


@FUZZ
@given(st.dictionaries(st.sampled_from(sorted(SERVE_FLOATS | SERVE_INTS)),
                       NUMBERS, min_size=1, max_size=4))
def test_serve_settings(values: dict[str, float | int]) -> None:
    """`stepwise serve` and the Python API share ServeSettings: accepted settings are finite and positive."""
    from stepwise.serve.settings import ServeSettings

    try:
        accepted = ServeSettings(**values)
    except StepwiseError as err:
        assert "\n" not in err.message
        return
    for name in values:
        value = getattr(accepted, name)
        assert math.isfinite(value) and (value >= 0 if name == "max_wait_ms" else value > 0), (name, value)
