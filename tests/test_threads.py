"""Threads and precision chosen by measurement (stepwise.threads, stepwise.precision)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import torch

from stepwise import precision as prec
from stepwise import threads as thr


@pytest.mark.parametrize("others, cores, expected", [
    (0.0, 2, 2), (0.3, 2, 2), (0.5, 2, 1), (1.0, 2, 1), (3.0, 2, 1), (1.0, 8, 7), (2.3, 8, 6), (2.4, 8, 5),
    (0.2, 1, 1)])
def test_threads_for_leaves_the_cores_others_hold(others: float, cores: int, expected: int) -> None:
    assert thr.threads_for(others, cores) == expected


def test_others_load_subtracts_our_own_cpu_time() -> None:
    before, after = thr.Sample(busy=10.0, own=1.0, wall=100.0), thr.Sample(busy=13.0, own=2.0, wall=101.0)
    assert thr.others_load(before, after) == pytest.approx(2.0)
    assert thr.others_load(after, after) == 0.0


@pytest.fixture
def busy_loop():
    """One other process spinning on a core at normal priority, as in the issue's measurement."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(0.3)
    yield proc
    proc.kill()
    proc.wait()


@pytest.mark.skipif(thr.sample() is None or thr.allowed_cores() < 2, reason="needs /proc/stat and 2 cores")
def test_probe_sees_a_busy_process_and_leaves_its_core(busy_loop) -> None:
    threads, load = thr.probe(0.3)
    assert load >= 0.7
    assert threads == thr.threads_for(load, thr.allowed_cores()) < thr.allowed_cores()  # its core is left


def test_governor_follows_the_load_and_logs_each_change(monkeypatch: pytest.MonkeyPatch) -> None:
    samples = iter([thr.Sample(0.0, 0.0, 0.0), thr.Sample(0.0, 0.0, 0.2), thr.Sample(0.0, 0.0, 0.5),  # start: quiet
                    thr.Sample(4.0, 2.0, 2.5),  # 2 s: we used 2 cores' worth of the 4 busy → others 1.0
                    thr.Sample(4.5, 2.5, 2.9),  # under a second later: not re-counted
                    thr.Sample(6.0, 4.0, 4.5),  # others 0.0 again
                    thr.Sample(7.0, 5.0, 5.5)])  # still quiet: no change
    monkeypatch.setattr(thr, "sample", lambda: next(samples))
    monkeypatch.setattr(thr, "allowed_cores", lambda: 2)
    monkeypatch.setattr(thr.time, "sleep", lambda s: None)
    saved = torch.get_num_threads()
    try:
        governor = thr.ThreadGovernor()
        assert governor.start() == 2 and torch.get_num_threads() == 2
        assert governor.recheck(10) == {"step": 10, "threads": 1, "others_load": 1.0, "reason": "load changed"}
        assert torch.get_num_threads() == 1
        assert governor.recheck(15) is None
        assert governor.recheck(20)["threads"] == 2 and torch.get_num_threads() == 2
        assert governor.recheck(30) is None
        report = governor.report()
        assert report["mode"] == "measured" and [c["threads"] for c in report["changes"]] == [2, 1, 2]
        assert (report["min"], report["max"], report["final"]) == (1, 2, 2)
    finally:
        torch.set_num_threads(saved)


def test_forced_threads_are_never_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(thr, "probe", lambda *a: pytest.fail("a forced count must not be measured"))
    saved = torch.get_num_threads()
    try:
        governor = thr.ThreadGovernor(forced=1)
        assert governor.start() == 1 and torch.get_num_threads() == 1
        assert governor.recheck(10) is None
        assert governor.report()["mode"] == "forced"
    finally:
        torch.set_num_threads(saved)


def test_serve_workers_share_the_free_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(thr, "probe", lambda *a: (4, 0.0))
    saved = torch.get_num_threads()
    try:
        assert thr.ThreadGovernor(share=2).start() == 2
        assert thr.ThreadGovernor(share=8).start() == 1
    finally:
        torch.set_num_threads(saved)


# --- precision -----------------------------------------------------------------------------------------


@pytest.fixture
def cache(tmp_path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STEPWISE_CACHE_DIR", str(tmp_path))
    return tmp_path / "precision.json"


@pytest.fixture
def tiny_task_model(tiny_model: str):
    from stepwise.model import TaskModel

    return TaskModel.from_encoder(tiny_model, 3, "mean")


def test_explicit_precision_is_kept_without_timing(tiny_task_model, cache, monkeypatch) -> None:
    monkeypatch.setattr(prec, "time_precisions", lambda *a, **k: pytest.fail("no timing for an explicit choice"))
    assert prec.measure_precision("fp32", tiny_task_model, batch=8, length=16, train=True)[0] == "fp32"
    assert prec.measure_precision("bf16", tiny_task_model, batch=8, length=16, train=True)[0] == "bf16"


def test_auto_without_native_bf16_is_fp32_untimed(tiny_task_model, cache, monkeypatch) -> None:
    monkeypatch.setattr(prec, "native_bf16", lambda: False)
    monkeypatch.setattr(prec, "time_precisions", lambda *a, **k: pytest.fail("bf16 is never faster without it"))
    choice, record = prec.measure_precision("auto", tiny_task_model, batch=8, length=16, train=True)
    assert choice == "fp32" and "no native bf16" in record["reason"]


@pytest.mark.parametrize("bf16_s, expected", [(0.90, "bf16"), (0.96, "fp32"), (1.10, "fp32")])
def test_auto_keeps_bf16_only_when_it_wins_by_the_margin(tiny_task_model, cache, monkeypatch, bf16_s, expected):
    monkeypatch.setattr(prec, "native_bf16", lambda: True)
    monkeypatch.setattr(prec, "time_precisions", lambda *a, **k: {"fp32": 1.0, "bf16": bf16_s})
    choice, record = prec.measure_precision("auto", tiny_task_model, batch=8, length=16, train=True)
    assert choice == expected
    assert (record["fp32_ms"], record["bf16_ms"], record["cached"]) == (1000.0, bf16_s * 1000, False)


def test_auto_is_cached_per_host_model_and_mode(tiny_task_model, tiny_model, cache, monkeypatch) -> None:
    from stepwise.model import TaskModel

    calls = []
    monkeypatch.setattr(prec, "native_bf16", lambda: True)
    monkeypatch.setattr(prec, "time_precisions", lambda *a, **k: calls.append(k) or {"fp32": 1.0, "bf16": 0.5})
    first = prec.measure_precision("auto", tiny_task_model, batch=30, length=20, train=True)
    again = prec.measure_precision("auto", tiny_task_model, batch=32, length=32, train=True)  # same buckets
    assert first[0] == again[0] == "bf16" and again[1]["cached"] and len(calls) == 1
    prec.measure_precision("auto", tiny_task_model, batch=32, length=32, train=False)  # inference: its own entry
    other = TaskModel.from_encoder(tiny_model, 7, "token")  # another head shape: its own entry
    prec.measure_precision("auto", other, batch=32, length=32, train=True)
    assert len(calls) == 3 and len(json.loads(cache.read_text())) == 3
    cache.write_text("{not json")  # a damaged cache is only a missed shortcut
    assert prec.measure_precision("auto", tiny_task_model, batch=32, length=32, train=True)[0] == "bf16"
    assert len(calls) == 4


def test_timing_leaves_the_model_its_gradients_and_the_rng_as_they_were(tiny_task_model) -> None:
    model = tiny_task_model.eval()
    rng = torch.get_rng_state()
    times = prec.time_precisions(model, 4, 8, train=True)
    assert set(times) == {"fp32", "bf16"} and all(0 < t < 5 for t in times.values())
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)


def test_torch_backend_decides_auto_on_its_first_batch(tiny_task_model, cache, monkeypatch) -> None:
    import numpy as np

    from stepwise.backends.torch import TorchBackend

    monkeypatch.setattr(prec, "native_bf16", lambda: True)
    monkeypatch.setattr(prec, "time_precisions", lambda m, b, n, train: {"fp32": 1.0, "bf16": 2.0})
    backend = TorchBackend(tiny_task_model, "auto")
    batch = {"input_ids": np.full((2, 5), 1000, dtype=np.int64), "attention_mask": np.ones((2, 5), dtype=np.int64)}
    assert backend.run(batch).shape == (2, 3)
    assert backend.precision == "fp32" and backend.precision_record["reason"] == "measured"


def test_a_run_reports_its_threads_and_precision(tiny_model, tmp_path, cache) -> None:
    import stepwise
    from tests.conftest import tiny_options, toy_splits

    options = tiny_options(tiny_model, toy_splits(tmp_path), tmp_path / "run", threads=None, epochs=1)
    run = stepwise.train(**options)
    train = run.results["train"]
    assert train["threads"]["mode"] == "measured" and train["threads"]["changes"][0]["reason"] == "start"
    assert 1 <= train["threads"]["final"] <= thr.allowed_cores()
    assert train["precision_choice"] == {"choice": "fp32", "reason": "--precision"}
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(1 <= r["threads"] <= thr.allowed_cores() for r in logged if "loss" in r)
    report = (tmp_path / "run" / "report.txt").read_text()
    assert "threads: measured: " in report and "precision_choice: fp32, --precision" in report

    forced = stepwise.train(**{**options, "threads": 1, "out": str(tmp_path / "forced")})
    assert forced.results["train"]["threads"] == {"mode": "forced", "start": 1, "final": 1, "min": 1, "max": 1,
                                                  "changes": [{"step": 0, "threads": 1, "reason": "--threads"}]}


def test_begin_counts_over_the_work_done_before_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe's interval is the loading the run does anyway: no sleep once 0.2 s have passed."""
    samples = iter([thr.Sample(0.0, 0.0, 0.0), thr.Sample(3.0, 1.5, 1.5), thr.Sample(3.0, 1.5, 1.5)])
    monkeypatch.setattr(thr, "sample", lambda: next(samples))
    monkeypatch.setattr(thr, "allowed_cores", lambda: 2)
    monkeypatch.setattr(thr.time, "monotonic", lambda: 1.5)
    monkeypatch.setattr(thr.time, "sleep", lambda s: pytest.fail(f"slept {s} s after 1.5 s of loading"))
    saved = torch.get_num_threads()
    try:
        governor = thr.ThreadGovernor()
        governor.begin()
        assert governor.start() == 1  # 3 busy core-seconds in 1.5 s, 1.5 of them ours: others held 1 core
        assert governor.changes == [{"step": 0, "threads": 1, "others_load": 1.0, "reason": "start"}]
    finally:
        torch.set_num_threads(saved)
