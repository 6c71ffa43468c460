"""`stepwise search`: trials as run directories, tables and best.yaml, pruning, continuing an interrupted study,
processes sharing a study, and one-line errors for bad search spaces."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stepwise.cli import main
from tests.conftest import toy_sentences, write_tsv

optuna = pytest.importorskip("optuna")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("search-data")
    return {"train": write_tsv(root / "train.tsv", toy_sentences(96, 1)),
            "dev": write_tsv(root / "dev.tsv", toy_sentences(32, 2)),
            "test": write_tsv(root / "test.tsv", toy_sentences(40, 3))}


def command(tiny_model: str, files: dict[str, Path], out: Path, space: Path, trials: int, *extra: str) -> list[str]:
    """A search on the tiny model: fp32, one thread, quiet, no early stopping (patience larger than the run)."""
    return ["search", "--train", str(files["train"]), "--dev", str(files["dev"]), "--model", tiny_model,
            "--out", str(out), "--space", str(space), "--trials", str(trials), "--precision", "fp32",
            "--threads", "1", "--quiet", "--patience", "100", "--epochs", "2", *extra]


def write_space(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def table(out: Path) -> list[dict[str, str]]:
    with open(out / "trials.csv", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def study_trials(out: Path) -> list:
    return optuna.load_study(study_name="stepwise", storage=f"sqlite:///{out / 'study.db'}").get_trials()


def test_trials_are_runs_tables_and_best_yaml_reproduces(tiny_model, files, tmp_path, capsys, monkeypatch):
    space = write_space(tmp_path / "space.yaml", "lr: {low: 3.0e-3, high: 3.0e-2, log: true}\n"
                        "batch_size: {choices: [16, 32]}\n")
    out = tmp_path / "search"
    args = command(tiny_model, files, out, space, 2, "--test", str(files["test"]), "--startup-trials", "5")
    assert main([*args, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["trials"] == {"COMPLETE": 2}
    runs = sorted((out / "trials").iterdir())
    assert [p.name for p in runs] == ["0000", "0001"]
    assert all((p / "results.json").is_file() and (p / "model").is_dir() for p in runs)
    rows = table(out)
    assert [r["trial"] for r in rows] == ["0", "1"] and {r["state"] for r in rows} == {"COMPLETE"}
    assert len({(r["lr"], r["batch_size"]) for r in rows}) == 2  # parameters are actually drawn
    for row, run in zip(rows, runs):  # the table holds each run's own numbers
        results = json.loads((run / "results.json").read_text())
        assert float(row["dev_accuracy"]) == pytest.approx(results["train"]["best_dev_accuracy"], abs=1e-4)
        assert int(row["steps"]) == results["train"]["steps"]
        assert float(row["lr"]) == pytest.approx(_config(run)["lr"], rel=1e-3)
    assert (out / "search.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    best = summary["best"]
    assert best["dev_accuracy"] == pytest.approx(max(float(r["dev_accuracy"]) for r in rows), abs=1e-4)
    assert f"Best: trial {best['trial']}" in (out / "trials.md").read_text()
    assert set(best["test"]) >= {"accuracy", "macro_f1"}

    # best.yaml retrains the best trial exactly: same data (absolute paths), same options, its own --out
    import yaml

    config = yaml.safe_load((out / "best.yaml").read_text())
    assert config["out"] == str((out / "best").resolve()) and config["test"] == str(files["test"].resolve())
    assert config["lr"] == pytest.approx(best["params"]["lr"]) and config["eval_every"] is not None
    monkeypatch.chdir(out / "trials")  # from anywhere
    assert main(["train", "--config", str(out / "best.yaml"), "--json"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["train"]["best_dev_accuracy"] == best["dev_accuracy"]
    assert again["train"]["steps"] == best["steps"]
    assert again["test"]["accuracy"] == pytest.approx(best["test"]["accuracy"])

    # the same command with more trials continues the study: the two runs stay as they were
    stamps = [(p / "results.json").stat().st_mtime_ns for p in runs]
    assert main(command(tiny_model, files, out, space, 3, "--test", str(files["test"]), "--startup-trials", "5")) == 0
    assert sorted(p.name for p in (out / "trials").iterdir()) == ["0000", "0001", "0002"]
    assert [(p / "results.json").stat().st_mtime_ns for p in runs] == stamps
    assert len(table(out)) == 3

    # ... but not with other fixed options or another space: that is another search
    assert main(command(tiny_model, files, out, space, 3, "--max-length", "64")) == 2
    assert "--max-length" in capsys.readouterr().err


def _config(run: Path) -> dict:
    import yaml

    return yaml.safe_load((run / "config.yaml").read_text())


def test_hopeless_trials_are_pruned_early(tiny_model, files, tmp_path):
    # lr 1e-7 cannot move the tiny model off chance; after one finished trial, the median pruner stops it
    space = write_space(tmp_path / "space.yaml", "lr: {choices: [3.0e-2, 1.0e-7]}\n")
    out = tmp_path / "search"
    assert main(command(tiny_model, files, out, space, 4, "--startup-trials", "1", "--batch-size", "16",
                        "--seed", "2")) == 0
    rows = table(out)
    full = [int(r["steps"]) for r in rows if r["state"] == "COMPLETE"]
    pruned = [r for r in rows if r["state"] == "PRUNED"]
    assert pruned, rows
    assert all(float(r["lr"]) == 1e-7 for r in pruned)
    assert max(full) == 12  # 2 epochs of 6 batches
    assert all(int(r["steps"]) < 12 for r in pruned)  # stopped early, visible in the table
    assert "PRUNED" in (out / "trials.md").read_text()


def _spawn(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen([sys.executable, "-m", "stepwise", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_search_continues_when_rerun(tiny_model, files, tmp_path, sig):
    space = write_space(tmp_path / "space.yaml", "lr: {low: 3.0e-3, high: 3.0e-2, log: true}\n")
    out = tmp_path / "search"
    args = command(tiny_model, files, out, space, 2, "--batch-size", "8", "--startup-trials", "5")
    proc = _spawn(args)
    deadline = time.monotonic() + 60
    while not (out / "trials" / "0001").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(sig)  # mid-trial 1: SIGKILL leaves no chance to tidy up; SIGTERM stops like Ctrl-C
    _, err = proc.communicate(timeout=60)
    first = json.loads((out / "trials" / "0000" / "results.json").read_text())
    killed = {t.number: t for t in study_trials(out)}
    assert killed[0].state.name == "COMPLETE"
    if sig == signal.SIGTERM:  # failed and queued for a retry at once; one line, exit 130
        assert proc.returncode == 130 and "rerun the same command" in err and err.count("\n") == 1, err
        assert killed[1].state.name == "FAIL" and killed[2].state.name == "WAITING"
    else:  # still RUNNING in the study: the rerun finds its process gone
        assert killed[1].state.name == "RUNNING"

    assert main(args) == 0
    trials = {t.number: t for t in study_trials(out)}
    states = [t.state.name for t in trials.values()]
    assert states.count("COMPLETE") == 2  # the total reaches --trials, counting the trial finished before
    assert trials[0].value == killed[0].value and trials[0].params == killed[0].params
    assert json.loads((out / "trials" / "0000" / "results.json").read_text()) == first
    assert trials[1].state.name == "FAIL"  # its process is gone: failed, then retried with the same parameters
    retry = [t for t in trials.values() if t.system_attrs.get("failed_trial") == 1]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE" and retry[0].params == trials[1].params
    rows = table(out)
    assert [r["state"] for r in rows].count("FAIL") == 1 and any(r["retry_of"] == "1" for r in rows)


def test_two_processes_share_one_study(tiny_model, files, tmp_path):
    space = write_space(tmp_path / "space.yaml", "lr: {low: 3.0e-3, high: 3.0e-2, log: true}\n")
    out = tmp_path / "search"
    args = command(tiny_model, files, out, space, 3, "--startup-trials", "5")
    procs = [_spawn(args) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    trials = study_trials(out)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    # each process starts a trial only while fewer than 3 are finished or running: at most one extra at the end
    assert 3 <= len(complete) <= 4 and all(t.state.name == "COMPLETE" for t in trials)
    assert len({t.user_attrs["pid"] for t in complete}) == 2  # both worked on it
    assert len({t.params["lr"] for t in complete}) == len(complete)  # no two trials drew the same parameters
    assert sorted(p.name for p in (out / "trials").iterdir()) == [f"{t.number:04d}" for t in complete]
    assert len(table(out)) == len(complete)


@pytest.mark.parametrize(("text", "line", "words"), [
    ("lr: {low: 1.0e-5, high: 1.0e-3}\nlearning_rate: {low: 1, high: 2}\n", 2, "unknown option 'learning_rate'"),
    ("train: {choices: [a.tsv, b.tsv]}\n", 1, "'train' cannot be searched"),
    ("lr: {low: 1.0e-3, high: 1.0e-5}\n", 1, "low must be below high"),
    ("lr: {low: 0, high: 1.0e-3, log: true}\n", 1, "a log range needs low > 0"),
    ("batch_size: {choices: [16, 32]}\nwarmup_ratio: {low: 0.0, high: 1.5}\n", 2, "--warmup-ratio must be less than 1"),
    ("batch_size: {choices: []}\n", 1, "choices must be a non-empty list"),
    ("batch_size: {low: 8, high: 32.5}\n", 1, "high must be a whole number"),
    ("lr: {low: 1.0e-5, hi: 1.0e-3}\n", 1, "unknown key 'hi'"),
    ("lr: 1.0e-4\n", 1, "expected {low: .., high: ..} or {choices: [..]}"),
    ("epochs: {low: 1, high: 3}\n", 1, "'epochs' is both fixed"),
    ("lr: {low: 1.0e-5\n", None, "invalid YAML"),
    ("", 1, "the search space is empty"),
])
def test_bad_space_is_one_line_exit_2(tiny_model, files, tmp_path, capsys, text, line, words):
    space = write_space(tmp_path / "space.yaml", text)
    assert main(command(tiny_model, files, tmp_path / "search", space, 2)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err, err
    where = f"{space}:{line}:" if line else f"{space}:"
    assert err.startswith(f"stepwise: error: {where}"), err
    assert not (tmp_path / "search").exists()  # refused before the study is created


def test_default_space_follows_the_task_and_the_fixed_flags(tmp_path):
    from stepwise.search.space import default_space, load_space

    classify = {p.name for p in default_space("classify")}
    assert classify == {"lr", "epochs", "batch_size", "warmup_ratio", "weight_decay", "dropout", "label_smoothing"}
    assert {p.name for p in default_space("tag")} == classify | {"casing"}  # word shape on/off
    assert "lr" not in {p.name for p in default_space("classify", {"lr": 1e-4})}
    lr = next(p for p in default_space("classify") if p.name == "lr")
    assert lr.log and lr.low < 1e-4 < lr.high  # the defaults of `stepwise train` sit inside the space
    # YAML 1.1 reads 1e-5 (no dot) as a string: the space takes it as the number it means
    path = write_space(tmp_path / "space.yaml", "lr: {low: 1e-5, high: 1e-3, log: true}\n")
    assert load_space(path)[0].low == 1e-5


def test_search_needs_dev_and_refuses_resume(tiny_model, files, tmp_path, capsys):
    space = write_space(tmp_path / "space.yaml", "lr: {low: 1.0e-3, high: 1.0e-2}\n")
    args = command(tiny_model, files, tmp_path / "search", space, 2)
    no_dev = [a for i, a in enumerate(args) if a != "--dev" and (i == 0 or args[i - 1] != "--dev")]
    assert main(no_dev) == 2
    assert "--dev is required" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 2
    assert "rerun the same command" in capsys.readouterr().err
