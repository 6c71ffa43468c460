"""torchrun: two processes (gloo, CPU) train the same run as one process at the same global batch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import toy_sentences, write_tsv

ROOT = Path(__file__).resolve().parents[1]
#: 1 vs 2 processes differ only in float summation order (and gloo's averaging): losses agree this closely
LOSS_TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("ddp-data")
    return {"train": write_tsv(tmp / "train.tsv", toy_sentences(120, 1)),  # 120 = 7 batches of 16 + one of 8
            "dev": write_tsv(tmp / "dev.tsv", toy_sentences(40, 2))}


def command(model: str, data: dict[str, Path], out: Path, processes: int, *extra: str) -> list[str]:
    train = ["train", "--train", str(data["train"]), "--dev", str(data["dev"]), "--out", str(out), "--model", model,
             "--batch-size", "16", "--lr", "5e-3", "--precision", "fp32", "--threads", "1",
             "--dropout", "0",  # no dropout: the processes' random number streams then do not matter
             "--quiet", "--patience", "100", *extra]
    if processes == 1:
        return [sys.executable, "-m", "stepwise", *train]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
            "-m", "stepwise", *train]


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def losses(out: Path) -> list[float]:
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in lines if "loss" in r]


EPOCHS = ("--epochs", "6", "--eval-every", "7")  # 48 steps, a checkpoint every 7


@pytest.fixture(scope="module")
def two_process_run(tiny_model: str, data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
                    ) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("two") / "run"
    return out, run(command(tiny_model, data, out, 2, *EPOCHS)).stdout


def test_two_processes_train_the_same_run_as_one(tiny_model: str, data: dict[str, Path],
                                                 two_process_run: tuple[Path, str], tmp_path: Path) -> None:
    two, printed = two_process_run
    one = tmp_path / "one"
    run(command(tiny_model, data, one, 1, *EPOCHS))
    assert printed.count("run written to") == 1  # rank 0 speaks for the run
    a, b = (json.loads((p / "results.json").read_text()) for p in (one, two))
    assert b["processes"] == 2 and "processes" not in a
    assert a["train"]["steps"] == b["train"]["steps"] == 48
    assert b["train"]["examples_per_s"] > 0 and b["train"]["examples"] == 120
    assert len(losses(one)) == len(losses(two)) > 0
    for x, y in zip(losses(one), losses(two)):
        assert y == pytest.approx(x, rel=LOSS_TOLERANCE)
    assert losses(two)[-1] < 0.5 * losses(two)[0]  # it learned
    assert b["dev"]["accuracy"] == pytest.approx(a["dev"]["accuracy"], abs=1 / 40)  # at most one dev text apart
    assert sorted(p.name for p in two.parent.iterdir()) == ["run"]  # one run directory, written once


def test_killed_two_process_run_resumes_with_one_process(tiny_model: str, data: dict[str, Path],
                                                         two_process_run: tuple[Path, str], tmp_path: Path) -> None:
    reference, out = two_process_run[0], tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command(tiny_model, data, out, 2, *EPOCHS), cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while not (out / "checkpoint.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both workers, mid-run
    proc.wait()
    assert not (out / "results.json").exists(), "the run finished before it could be killed"
    import torch

    checkpointed = torch.load(out / "checkpoint.pt", weights_only=False)["state"]["step"]
    assert 0 < checkpointed < 48
    lines = (out / "metrics.jsonl").read_text().splitlines()
    kept = [line for line in lines if json.loads(line)["step"] <= checkpointed]
    run(command(tiny_model, data, out, 1, *EPOCHS, "--resume"))
    # continued, not started over: the logged lines up to the checkpoint (wall-clock rates included) are the old ones
    assert (out / "metrics.jsonl").read_text().splitlines()[:len(kept)] == kept
    done, ref = (json.loads((p / "results.json").read_text()) for p in (out, reference))
    assert done["train"]["steps"] == ref["train"]["steps"] == 48
    assert losses(out)[-1] == pytest.approx(losses(reference)[-1], rel=LOSS_TOLERANCE)
    assert done["dev"]["accuracy"] == pytest.approx(ref["dev"]["accuracy"], abs=1 / 40)


@pytest.mark.parametrize("verb, extra", [("rl", ["--reward", "accuracy"]), ("distill", ["--layers", "1"])])
def test_rl_and_distillation_run_under_torchrun(verb: str, extra: list[str], data: dict[str, Path],
                                                 two_process_run: tuple[Path, str], tmp_path: Path) -> None:
    start = two_process_run[0]
    out = tmp_path / verb
    printed = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
                   "stepwise", verb, str(start), *extra, "--train", str(data["train"]), "--dev", str(data["dev"]),
                   "--out", str(out), "--max-steps", "6", "--batch-size", "16", "--threads", "1", "--quiet"]).stdout
    results = json.loads((out / "results.json").read_text())
    assert results["processes"] == 2 and results["train"]["steps"] == 6 and printed.count("run written to") == 1
    assert results["dev"]["accuracy"] >= 0.5
    if verb == "rl":
        assert "reward_mean" in (out / "metrics.jsonl").read_text()
