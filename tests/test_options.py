"""One options mechanism: each verb's options model is the single declaration, so the CLI (flags generated from
it) and the Python API (building it) accept and refuse the same values, in the same one line."""

from __future__ import annotations

import pytest

from stepwise.cli import main
from stepwise.errors import StepwiseError
from stepwise.llm.cli import LLMOptions
from stepwise.predictor import PredictOptions
from stepwise.recipes.monitor import MonitorOptions
from stepwise.recipes.search import SearchOptions
from stepwise.serve.settings import ServeSettings

CASES = [  # (model, the bad value as keywords, the same value on the command line)
    (ServeSettings, {"max_batch": 0}, ["serve", "RUN", "--max-batch", "0"]),
    (ServeSettings, {"port": 70000}, ["serve", "RUN", "--port", "70000"]),
    (PredictOptions, {"steps": 0}, ["predict", "RUN", "--input", "x.txt", "--steps", "0"]),
    (PredictOptions, {"confidence": 1.5}, ["evaluate", "RUN", "--data", "x.tsv", "--confidence", "1.5"]),
    (MonitorOptions, {"batch_size": 0}, ["monitor", "--classifier", "RUN", "--input", "x", "--db", "y",
                                         "--batch-size", "0"]),
    (MonitorOptions, {"window": "5 parsecs"}, ["monitor", "--classifier", "RUN", "--input", "x", "--db", "y",
                                               "--window", "5 parsecs"]),
    (SearchOptions, {"trials": 0}, ["search", "--trials", "0", "--train", "x.tsv", "--out", "o"]),
    (LLMOptions, {"llm": "http://127.0.0.1:9", "hybrid": "llm-first"},
     ["predict", "RUN", "--input", "x.txt", "--llm", "http://127.0.0.1:9", "--hybrid", "llm-first"]),
    (LLMOptions, {"shots_file": "shots.tsv"}, ["predict", "RUN", "--input", "x.txt", "--shots-file", "shots.tsv"]),
]


@pytest.mark.parametrize("model, values, argv", CASES, ids=[f"{c[0].__name__}-{next(iter(c[1]))}" for c in CASES])
def test_cli_and_python_refuse_the_same_value_in_the_same_words(model, values, argv, tmp_path, monkeypatch,
                                                                  capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)  # nothing here exists: the options are refused before any file is looked at
    with pytest.raises(StepwiseError) as err:
        model(**values)
    assert main(argv) == 2
    printed = capsys.readouterr().err.strip()
    assert printed == f"stepwise: error: {err.value.message}"
    assert "\n" not in printed


@pytest.mark.parametrize("verb, model", [("serve", ServeSettings), ("monitor", MonitorOptions),
                                         ("predict", PredictOptions), ("evaluate", LLMOptions),
                                         ("search", SearchOptions)])
def test_every_field_is_a_flag_of_its_verb(verb: str, model, capsys: pytest.CaptureFixture) -> None:
    main([verb, "--help"])
    text = capsys.readouterr().out
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if extra.get("flag") is False:
            continue
        assert "--" + name.replace("_", "-") in text, name


def test_python_keeps_the_dataclass_call_forms() -> None:
    """Positional values in field order and assignment still work (validated), as with the dataclasses."""
    options = PredictOptions(2, None, None, "best")
    assert (options.steps, options.keep) == (2, "best")
    monitor = MonitorOptions(webhook_wait=0.5)
    monitor.webhook_wait = 2
    assert monitor.webhook_wait == 2.0 and monitor.window == 3600.0
    with pytest.raises(StepwiseError, match="--batch-size must be at least 1"):
        monitor.batch_size = 0
