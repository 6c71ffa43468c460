"""Hardening round 3 (issue 34), the parts that need no model: where outputs may go, finite numbers, the
metadata reader, the monitor database's identity and the monitor's time range. Fast: no torch."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest

from stepwise.errors import StepwiseError
from stepwise.places import EXPORT, FILE, RUN, SEARCH, check_output, place_kind


def fake_run(root: Path, name: str = "run") -> Path:
    """A finished run directory's layout (the files the place rule looks at)."""
    run = root / name
    (run / "model").mkdir(parents=True)
    (run / "model" / "stepwise.json").write_text(json.dumps({"task": "classify", "labels": ["a", "b"]}))
    (run / "config.yaml").write_text("task: classify\n")
    (run / "labels.json").write_text('["a", "b"]')
    (run / "results.json").write_text(json.dumps({"task": "classify", "dev": {"accuracy": 0.5}}))
    return run


def fake_export(root: Path, name: str = "exp", onnx: bool = True) -> Path:
    exp = root / name
    exp.mkdir(parents=True)
    meta = {"task": "classify", "labels": ["a", "b"], "export": {"format": "onnx" if onnx else "hf"}}
    (exp / "stepwise.json").write_text(json.dumps(meta))
    if onnx:
        (exp / "model.onnx").write_bytes(b"onnx")
    return exp


def refused(fn, *args, **kwargs) -> str:
    with pytest.raises(StepwiseError) as err:
        fn(*args, **kwargs)
    assert "\n" not in err.value.message
    return err.value.message


def test_place_kinds_tell_a_run_its_model_and_exports_apart(tmp_path: Path) -> None:
    run = fake_run(tmp_path)
    assert place_kind(run) == RUN
    assert place_kind(run / "model") == "model"  # stepwise.json, but not an export: the bug of issue 34
    assert place_kind(fake_export(tmp_path)) == EXPORT
    assert place_kind(fake_export(tmp_path, "hf", onnx=False)) == EXPORT
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.yaml").write_text("a: 1\n")  # a project's own config.yaml does not make a run
    assert place_kind(plain) is None


def test_outputs_inside_a_run_or_export_are_refused(tmp_path: Path) -> None:
    run, other, exp = fake_run(tmp_path), fake_run(tmp_path, "other"), fake_export(tmp_path)
    assert "a run's model directory" in refused(check_output, run / "model", "--out", EXPORT, source=run)
    assert "the run this command starts from" in refused(check_output, run, "--out", EXPORT, source=run)
    assert "the run this command starts from" in refused(check_output, run, "--out", RUN, source=run)
    assert "inside a run directory" in refused(check_output, other / "onnx", "--out", EXPORT, source=run)
    assert "inside a run directory" in refused(check_output, run / "sub" / "x", "--out", EXPORT, source=run)
    assert "a run's model directory" in refused(check_output, run / "model", "--out", RUN)
    assert "inside a run directory" in refused(check_output, run / "nested", "--out", RUN)
    assert "inside a run directory" in refused(check_output, run / "s", "--out", SEARCH)
    assert "an export" in refused(check_output, exp, "--out", RUN)
    assert "inside an export" in refused(check_output, exp / "p.tsv", "--out", FILE)
    assert "inside a run directory" in refused(check_output, run / "results.json", "--out", FILE)
    assert "inside a run's model directory" in refused(check_output, run / "model" / "x.db", "--db", FILE)
    assert "the input" in refused(check_output, tmp_path / "in.txt", "--out", FILE, inputs=[tmp_path / "in.txt"])
    (tmp_path / "file").write_text("x")
    assert "is a file, not a directory" in refused(check_output, tmp_path / "file" / "x", "--out", FILE)
    assert "is a file, not a directory" in refused(check_output, tmp_path / "file", "--out", RUN)


def test_outputs_where_they_belong_are_accepted(tmp_path: Path) -> None:
    run, exp = fake_run(tmp_path), fake_export(tmp_path)
    for name in ("onnx", "onnx-int8", "hf"):
        check_output(run / name, "--out", EXPORT, source=run)  # the run's own default exports
    check_output(exp, "--out", EXPORT, source=run)  # an earlier export, replaced
    check_output(run, "--out", RUN)  # the run itself: begin() decides (finished → refused unless --overwrite)
    check_output(tmp_path / "new" / "run", "--out", RUN, source=run)
    check_output(run / "predictions.jsonl", "--output", FILE)  # a file beside the run's own files
    check_output(run / "monitor.sqlite", "--db", FILE)
    check_output(tmp_path / "search" / "trials" / "0000", "--out", RUN)  # a search's trial


def test_check_finite_names_the_option_in_every_container() -> None:
    from stepwise.numbers import check_finite

    check_finite({"lr": 1e-4, "steps": 3, "name": "x", "rates": {"spelling": 0.5}, "none": None})
    assert "--timeout-s must be a finite number, got nan" in refused(check_finite, {"timeout_s": math.nan})
    assert "--rate spelling must be a finite number, got inf" in refused(check_finite,
                                                                          {"rate": {"spelling": math.inf}})
    assert "--z must be a finite number, got -inf" in refused(check_finite, {"z": [1.0, -math.inf]})


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_python_entry_points_refuse_non_finite_numbers(value: float) -> None:
    from stepwise.config import build_config
    from stepwise.monitor.alerts import Detector
    from stepwise.recipes.monitor import MonitorOptions
    from stepwise.serve.settings import ServeSettings

    assert "--timeout-s must be a finite" in refused(ServeSettings, timeout_s=value)
    assert "--max-wait-ms must be a finite" in refused(ServeSettings, max_wait_ms=value)
    assert "--epochs must be a finite" in refused(build_config, {"train": "t", "out": "o", "epochs": value})
    assert "--weight-decay must be a finite" in refused(build_config, {"train": "t", "out": "o",
                                                                        "weight_decay": value})
    assert "--min-shift must be a finite" in refused(Detector, 3600.0, min_shift=value)
    assert "--webhook-wait must be a finite" in refused(MonitorOptions, webhook_wait=value)


def test_cli_refuses_non_finite_float_options_of_every_verb(capsys: pytest.CaptureFixture) -> None:
    from stepwise.cli import main

    for argv in (["serve", "x", "--timeout-s", "nan"], ["noise", "--input", "x", "--out", "y", "--scale", "inf"],
                 ["predict", "x", "--input", "y", "--llm", "http://h", "--llm-timeout", "inf"],
                 ["search", "--trials", "1", "--timeout", "nan", "--train", "t", "--out", "o"],
                 ["distill", "x", "--layers", "1", "--temperature", "inf", "--train", "t", "--out", "o"],
                 ["monitor", "--classifier", "x", "--input", "y", "--db", "z", "--z", "-inf"],
                 ["train", "--train", "t", "--out", "o", "--lr", "1e999"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert "must be a finite number" in err and "\n" not in err, argv


def test_read_json_turns_every_damage_into_one_line(tmp_path: Path) -> None:
    from stepwise.modeldir import read_json, read_meta

    path = tmp_path / "stepwise.json"
    cases = {None: "is missing", "": "is empty", '{"task": "classify", "lab': "damaged (cut off)",
             "[1, 2]": "a JSON object expected", "{}": "no 'task'", '{"task": "classify", "labels": "ab"}':
             "a str as its 'labels'", '{"task": "classify", "labels": [], "format": 99}': "newer stepwise",
             b"\xff\xfe{}": "not UTF-8"}
    for text, words in cases.items():
        path.unlink(missing_ok=True)
        if text is not None:
            path.write_bytes(text if isinstance(text, bytes) else text.encode())
        message = refused(read_json, path, "model metadata", "restore it", required={"task": str, "labels": list},
                          newest=1)
        fix = "upgrade stepwise" if words == "newer stepwise" else "restore it"
        assert words in message and str(path) in message and fix in message, (text, message)
    path.write_text('{"task": "classify", "labels": ["a"], "format": 1}')
    assert read_meta(tmp_path)["labels"] == ["a"]


def test_runs_listing_flags_a_damaged_run_and_lists_the_others(tmp_path: Path) -> None:
    from stepwise.rundir import describe_run, list_runs

    good, cut, foreign = fake_run(tmp_path, "good"), fake_run(tmp_path, "cut"), fake_run(tmp_path, "foreign")
    (cut / "results.json").write_text('{"task": "classify", "dev": {"accur')
    (foreign / "results.json").write_text("[]")
    rows = {Path(r["path"]).name: r for r in list_runs(tmp_path)}
    assert rows["good"]["status"] == "finished" and rows["good"]["metric"] == "dev accuracy 0.5000"
    assert rows["cut"]["status"] == rows["foreign"]["status"] == "damaged"
    assert "cut off" in rows["cut"]["metric"]
    assert "results.json: the run's results file is damaged" in refused(describe_run, cut)
    (good / "labels.json").write_text("")
    assert "labels.json: the run's label file is empty" in refused(describe_run, good)


def test_monitor_database_of_another_program_is_refused_untouched(tmp_path: Path) -> None:
    from stepwise.monitor.store import FORMAT, Store

    foreign = tmp_path / "app.sqlite"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE users (id INTEGER)")
    before = foreign.read_bytes()
    for create in (True, False):
        assert "not a monitor database (it holds other tables: users)" in refused(Store, foreign, create=create)
    assert foreign.read_bytes() == before and not Path(f"{foreign}-wal").exists()
    (tmp_path / "empty.sqlite").write_bytes(b"")
    assert "the monitor database is empty" in refused(Store, tmp_path / "empty.sqlite", create=False)
    ours = tmp_path / "m.sqlite"
    Store(ours).close()
    Store(ours, create=False).close()  # its own database opens again
    with sqlite3.connect(ours) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'format'", (json.dumps(FORMAT + 1),))
    assert "written by a newer stepwise" in refused(Store, ours)


def test_monitor_stores_only_times_it_can_read_back() -> None:
    from stepwise.monitor.alerts import iso
    from stepwise.monitor.events import MAX_EPOCH, parse_duration, parse_event, parse_time

    for value in ("0001-01-01T00:30:00+01:00", "9999-12-31T23:30:00-01:00", "1969-12-31T23:59:59Z", -1, MAX_EPOCH,
                  "0001-01-01T00:00:00Z"):
        assert parse_time(value) is None, value
    event = parse_event(json.dumps({"id": 1, "time": "9999-12-31T23:30:00-01:00", "text": "x"}), 4)
    assert "bad time" in event.reason
    for value in ("2026-03-02T01:00:00+05:00", 0, MAX_EPOCH - 1):
        iso(parse_time(value) + parse_duration(f"{int(MAX_EPOCH)}s"))  # the furthest window end still reads back
    assert "longer than" in refused(parse_duration, "99999999999999d")


@pytest.mark.parametrize(("env", "words"), [
    ({"WORLD_SIZE": "2"}, "WORLD_SIZE=2 is set, but not by torchrun (RANK, MASTER_ADDR, MASTER_PORT missing)"),
    ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not a whole number"),
    ({"WORLD_SIZE": "2", "RANK": "5", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"},
     "RANK='5' is not a whole number from 0 to 1")])
def test_a_torchrun_environment_that_is_not_one_is_one_line(env: dict[str, str], words: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    from stepwise.cli import main

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["train", "--train", str(tmp_path / "t.tsv"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err
    assert not (tmp_path / "run").exists()
