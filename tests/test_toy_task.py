"""Acceptance for the task boundary: a fourth task in one file (tests/toy_task.py) plus its sample passes the
conformance suite and trains, evaluates and predicts from the CLI, touching no other file of stepwise.

The task is registered for the test only (`register_task` in your own code does the same), so its option
`--toy-lowercase`, its `.toy` file detection and its search dimension appear while it is registered.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import stepwise.tasks
import tests.test_tasks as conformance
from stepwise.cli import main
from tests.conftest import toy_sentences
from tests.toy_task import NAME, ToyTask, sample


@pytest.fixture()
def toy(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(stepwise.tasks._REGISTRY, NAME, ToyTask)  # = register_task(NAME, ToyTask), undone after
    monkeypatch.setitem(conformance.SAMPLES, NAME, sample)
    return NAME


def test_the_toy_task_passes_the_conformance_suite(toy: str, tiny_model: str) -> None:
    from stepwise.model import load_tokenizer

    tokenizer = load_tokenizer(tiny_model)
    conformance.test_declared_attributes(toy)
    conformance.test_rejects_every_other_tasks_data(toy)
    conformance.test_labels_are_stable_and_checked(toy)
    conformance.test_encode_decode_round_trip(toy, tokenizer)
    conformance.test_metrics_and_reports(toy)
    conformance.test_records_in_every_output_format(toy, tiny_model, tokenizer)
    conformance.test_model_declares_the_inputs_the_task_feeds(toy, tiny_model, tokenizer)
    conformance.test_llm_prompting(toy)  # no PromptsLLM: refused in one line
    conformance.test_augmentation(toy)  # no Augments: refused in one line
    for name in LABEL_TASKS_WITHOUT(toy):  # the built-in tasks refuse the toy's data in turn
        with pytest.raises(stepwise.StepwiseError, match="toy.file:"):
            stepwise.tasks.task_class(name).check_data(sample(), "toy.file")


def LABEL_TASKS_WITHOUT(toy: str) -> list[str]:
    return [n for n in conformance.LABEL_TASKS if n != toy and n != "classify"]  # a rating is also a class label


def _write(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("".join(f"{t}\t{y}\n" for t, y in rows), encoding="utf-8")
    return path


def test_the_toy_task_trains_evaluates_and_predicts_from_the_cli(toy: str, tiny_model: str, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    train = _write(tmp_path / "reviews.toy", toy_sentences(60, 0, ("1", "5")))
    test = _write(tmp_path / "held.toy", toy_sentences(12, 1, ("1", "5")))
    run = tmp_path / "run"
    assert main(["train", "--help"]) == 0
    assert "--toy-lowercase" in capsys.readouterr().out  # its own option is a flag while it is registered
    # no --task: the .toy file is claimed by the toy task
    assert main(["train", "--train", str(train), "--out", str(run), "--model", str(tiny_model), "--epochs", "2",
                 "--batch-size", "8", "--toy-lowercase", "--quiet"]) == 0
    results = json.loads((run / "results.json").read_text())
    meta = json.loads((run / "model" / "stepwise.json").read_text())
    assert results["task"] == toy and meta["task_options"] == {"lowercase": True}
    assert "accuracy" in results["test"]
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data", str(test), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= scores["accuracy"] <= 1.0
    out = tmp_path / "predictions.jsonl"
    assert main(["predict", str(run), "--input", str(test), "--output", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 12 and {r["label"] for r in records} <= {"1", "5"}
    # the verbs that need a capability it lacks refuse it in one line, exit 2
    assert main(["rl", str(run), "--train", str(train), "--out", str(tmp_path / "rl"), "--quiet"]) == 2
    assert "not available for toy model runs" in capsys.readouterr().err
    # another task refuses the toy's own option
    assert main(["train", "--task", "classify", "--train", str(train), "--out", str(tmp_path / "c"),
                 "--toy-lowercase", "--quiet"]) == 2
    assert "--toy-lowercase is for toy models, not available for classifier runs" in capsys.readouterr().err


def test_the_toy_task_brings_its_search_dimension(toy: str) -> None:
    from stepwise.search.space import default_space

    assert "toy_lowercase" in {p.name for p in default_space(toy)}
    assert "toy_lowercase" not in {p.name for p in default_space("classify")}
