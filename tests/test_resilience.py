"""A run is always resumable or restartable; a bug is one line and a log; calls leave the process as they found it."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import stepwise
from stepwise.cli import main
from stepwise.training.loop import LoopState
from tests.conftest import tiny_options, toy_splits

# 160 examples / batch 16 = 10 steps per epoch; 2 epochs; evaluation (and checkpoint) at every epoch end.
OPTIONS = {"epochs": 2}


def cli_args(tiny_model: str, files: dict, out: Path, *extra: str) -> list[str]:
    return ["train", "--train", str(files["train"]), "--dev", str(files["dev"]), "--test", str(files["test"]),
            "--out", str(out), "--model", tiny_model, "--epochs", "2", "--batch-size", "16", "--lr", "1e-2",
            "--precision", "fp32", "--threads", "1", "--quiet", "--patience", "1000", *extra]


@pytest.fixture(scope="module")
def reference(tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> dict:

    tmp = tmp_path_factory.mktemp("reference")
    files = toy_splits(tmp)
    run = stepwise.train(**tiny_options(tiny_model, files, tmp / "full", **OPTIONS))
    return {"files": files, "results": run.results}


def interrupt_at(step: int):
    def callback(state: LoopState) -> None:
        if state.step == step:
            raise KeyboardInterrupt

    return callback


def same_quality(a: dict, b: dict) -> bool:
    return a["dev"] == b["dev"] and a["test"] == b["test"] and a["train"]["steps"] == b["train"]["steps"]


def test_interrupt_before_first_evaluation_then_resume(tiny_model: str, reference: dict, tmp_path: Path) -> None:
    options = tiny_options(tiny_model, reference["files"], tmp_path / "run", **OPTIONS)
    with pytest.raises(KeyboardInterrupt):
        stepwise.train(**options, callbacks=(interrupt_at(3),))
    assert (tmp_path / "run" / "config.yaml").exists() and not (tmp_path / "run" / "checkpoint.pt").exists()
    resumed = stepwise.train(**{**options, "resume": True})
    assert same_quality(resumed.results, reference["results"])


def test_plain_rerun_after_interrupt_before_first_checkpoint(tiny_model: str, reference: dict, tmp_path: Path) -> None:
    options = tiny_options(tiny_model, reference["files"], tmp_path / "run", **OPTIONS)
    with pytest.raises(KeyboardInterrupt):
        stepwise.train(**options, callbacks=(interrupt_at(2),))
    assert same_quality(stepwise.train(**options).results, reference["results"])


def test_interrupt_after_a_checkpoint_then_resume(tiny_model: str, reference: dict, tmp_path: Path) -> None:
    options = tiny_options(tiny_model, reference["files"], tmp_path / "run", **OPTIONS)
    with pytest.raises(KeyboardInterrupt):
        stepwise.train(**options, callbacks=(interrupt_at(14),))
    assert (tmp_path / "run" / "checkpoint.pt").exists()
    with pytest.raises(stepwise.StepwiseError, match="interrupted run"):
        stepwise.train(**options)
    resumed = stepwise.train(**{**options, "resume": True})
    assert same_quality(resumed.results, reference["results"])


def test_interrupt_during_the_first_model_save(tiny_model: str, reference: dict, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed inside save_pretrained: a half-written temp dir and no checkpoint; the retry cleans and finishes."""
    from stepwise.model import TaskModel

    original = TaskModel.save_pretrained

    def broken_save(self, directory, tokenizer, meta):
        tmp = Path(directory).parent / ".model.interrupted"
        tmp.mkdir()
        (tmp / "model.safetensors").write_bytes(b"\0" * 1000)
        raise KeyboardInterrupt

    monkeypatch.setattr(TaskModel, "save_pretrained", broken_save)
    options = tiny_options(tiny_model, reference["files"], tmp_path / "run", **OPTIONS)
    with pytest.raises(KeyboardInterrupt):
        stepwise.train(**options)
    assert (tmp_path / "run" / ".model.interrupted").exists()
    monkeypatch.setattr(TaskModel, "save_pretrained", original)
    resumed = stepwise.train(**{**options, "resume": True})
    assert same_quality(resumed.results, reference["results"])
    assert not (tmp_path / "run" / ".model.interrupted").exists()


def test_a_model_swap_interrupted_between_renames_is_restored(tmp_path: Path) -> None:
    from stepwise.rundir import RunDir

    run = RunDir(tmp_path / "run")
    (run.path / ".model.old").mkdir(parents=True)
    (run.path / ".model.old" / "stepwise.json").write_text("{}")
    run.clean_temp()
    assert (run.model_dir / "stepwise.json").exists() and not (run.path / ".model.old").exists()


def test_overwrite_starts_over_and_keeps_foreign_files(tiny_model: str, reference: dict, tmp_path: Path) -> None:
    options = tiny_options(tiny_model, reference["files"], tmp_path / "run", **OPTIONS)
    stepwise.train(**options)
    (tmp_path / "run" / "notes.md").write_text("mine")
    with pytest.raises(stepwise.StepwiseError, match="finished run"):
        stepwise.train(**options)
    again = stepwise.train(**options, overwrite=True)
    assert same_quality(again.results, reference["results"])
    assert (tmp_path / "run" / "notes.md").read_text() == "mine"


def test_sigterm_behaves_like_ctrl_c(tiny_model: str, reference: dict, tmp_path: Path) -> None:
    """A real process, killed politely mid-run: message, exit 130, and `--resume` finishes the run."""
    out = tmp_path / "run"
    args = [sys.executable, "-m", "stepwise", *cli_args(tiny_model, reference["files"], out, "--epochs", "20")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
    deadline = time.time() + 60
    while not (out / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "stepwise: interrupted — continue with the same command plus --resume"
    done = subprocess.run([*args, "--resume"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "results.json").read_text())["train"]["steps"] == 200


def test_unexpected_exception_is_one_line_with_a_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture) -> None:
    import stepwise.cli as cli

    def bug(args):
        raise ZeroDivisionError("injected")

    monkeypatch.setitem(cli.HANDLERS, "runs", bug)
    monkeypatch.setenv("STEPWISE_LOG_DIR", str(tmp_path / "logs"))
    assert main(["runs", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "internal error: ZeroDivisionError: injected" in err
    log = Path(err.rsplit(" ", 1)[-1])
    assert log.parent == tmp_path / "logs" and "Traceback" in log.read_text() and "injected" in log.read_text()


def test_train_restores_process_state_and_repeats_exactly(tiny_model: str, reference: dict, tmp_path: Path) -> None:
    torch.set_num_threads(2)
    random.seed(123)
    np.random.seed(123)
    torch.manual_seed(123)
    before = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    random.seed(123)
    np.random.seed(123)
    torch.manual_seed(123)
    options = tiny_options(tiny_model, reference["files"], tmp_path / "a", **OPTIONS, refine_steps=2)
    first = stepwise.train(**options)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == before
    assert torch.get_num_threads() == 2  # the run asked for 1 thread; the caller's setting is back
    torch.manual_seed(999)  # whatever the caller does in between does not change the next run
    second = stepwise.train(**{**options, "out": str(tmp_path / "b")})
    assert same_quality(first.results, second.results)
    lines = [(tmp_path / r / "metrics.jsonl").read_text() for r in ("a", "b")]
    assert [json.loads(x).get("loss") for x in lines[0].splitlines()] == \
        [json.loads(x).get("loss") for x in lines[1].splitlines()]


def test_importing_stepwise_changes_nothing(tmp_path: Path) -> None:
    code = ("import os, logging, sys; before = dict(os.environ); import stepwise, stepwise.cli; "
            "from transformers.utils import logging as hf; "
            "assert dict(os.environ) == before, 'environment changed'; "
            "assert 'torch' not in sys.modules, 'torch imported'; "
            "assert hf.get_verbosity() == logging.WARNING, 'transformers logging changed'")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TOKENIZERS_PARALLELISM")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr


def test_the_exported_functions_survive_importing_every_subpackage() -> None:
    """A second `stepwise.rl(...)` in one process once failed with "module not callable": the first imported the
    rewards from a subpackage named `stepwise.rl`, and importing a subpackage rebinds that name on the package."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(stepwise.__path__):
        if info.ispkg:
            importlib.import_module(f"stepwise.{info.name}")
    for name in stepwise.__all__:
        assert not isinstance(getattr(stepwise, name), type(stepwise)), f"stepwise.{name} is a module"
    assert callable(stepwise.rl) and callable(stepwise.train) and callable(stepwise.load)


def test_files_are_written_with_normal_permissions(tiny_model: str, reference: dict, tmp_path: Path) -> None:
    run = stepwise.train(**tiny_options(tiny_model, reference["files"], tmp_path / "run", epochs=1))
    mask = os.umask(0)
    os.umask(mask)
    for name in ("results.json", "report.txt", "config.yaml", "model/stepwise.json", "model/head.safetensors"):
        assert (run.path / name).stat().st_mode & 0o777 == 0o666 & ~mask, name
    assert run.path.joinpath("model").stat().st_mode & 0o777 == 0o777 & ~mask


def test_version_runs_and_show(tiny_model: str, reference: dict, tmp_path: Path,
                               capsys: pytest.CaptureFixture) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"stepwise {stepwise.__version__}"
    stepwise.train(**tiny_options(tiny_model, reference["files"], tmp_path / "runs" / "a", epochs=1))
    assert main(["runs", str(tmp_path / "runs")]) == 0
    listing = capsys.readouterr().out
    assert "classify" in listing and "finished" in listing and "test accuracy" in listing
    assert main(["show", str(tmp_path / "runs" / "a")]) == 0
    shown = capsys.readouterr().out
    assert "labels: neg, pos" in shown and "test: accuracy" in shown and "lr=0.01" in shown
