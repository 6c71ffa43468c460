"""The training loop on a tiny random BERT: learning, determinism, resume, early stopping, run layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import stepwise
from stepwise.training.loop import LoopState
from tests.conftest import tiny_options


class Crash(Exception):
    pass


def test_learns_and_writes_run_directory(tiny_model: str, toy_files: dict, tmp_path: Path) -> None:
    run = stepwise.train(**tiny_options(tiny_model, toy_files, tmp_path / "run", epochs=6))
    assert run.results["test"]["accuracy"] >= 0.9, run.results["test"]
    for name in ("config.yaml", "labels.json", "metrics.jsonl", "report.txt", "report.json", "curves.png",
                 "results.json", "model/stepwise.json", "model/head.safetensors", "model/config.json"):
        assert (run.path / name).exists(), name
    assert json.loads((run.path / "labels.json").read_text()) == ["neg", "pos"]
    records = [json.loads(x) for x in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in r for r in records) and sum("dev" in r for r in records) == 6
    report = json.loads((run.path / "report.json").read_text())
    assert report["test"]["confusion_matrix"]["labels"] == ["neg", "pos"]
    assert set(report["test"]["per_class"]) == {"neg", "pos"}
    assert "precision" in (run.path / "report.txt").read_text()
    assert (run.path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    predictor = stepwise.load(run.path)
    assert predictor.predict(["the movie was excellent and wonderful", "the movie was awful and terrible"]) == \
        ["pos", "neg"]


def test_same_seed_same_metrics(tiny_model: str, toy_files: dict, tmp_path: Path) -> None:
    a = stepwise.train(**tiny_options(tiny_model, toy_files, tmp_path / "a", epochs=2))
    b = stepwise.train(**tiny_options(tiny_model, toy_files, tmp_path / "b", epochs=2))
    c = stepwise.train(**tiny_options(tiny_model, toy_files, tmp_path / "c", epochs=2, seed=7))
    losses = [[json.loads(x).get("loss") for x in (r.path / "metrics.jsonl").read_text().splitlines()]
              for r in (a, b, c)]
    assert losses[0] == losses[1]
    assert losses[0] != losses[2]
    assert a.results["dev"] == b.results["dev"]


def test_resume_after_crash_in_epoch_two(tiny_model: str, toy_files: dict, tmp_path: Path) -> None:
    # 160 examples / batch 16 = 10 steps per epoch; evaluate (and checkpoint) every 4 steps; crash at step 15.
    options = {"epochs": 3, "eval_every": 4}
    full = stepwise.train(**tiny_options(tiny_model, toy_files, tmp_path / "full", **options))

    def crash(state: LoopState) -> None:
        if state.step == 15:
            raise Crash

    with pytest.raises(Crash):
        stepwise.train(**tiny_options(tiny_model, toy_files, tmp_path / "resumed", **options), callbacks=(crash,))
    assert not (tmp_path / "resumed" / "results.json").exists()
    seen: list[int] = []
    resumed = stepwise.train(**tiny_options(tiny_model, toy_files, tmp_path / "resumed", resume=True, **options),
                             callbacks=(lambda state: seen.append(state.step),))
    assert seen[0] == 13  # continued after the step-12 checkpoint instead of starting over
    assert resumed.results["train"]["steps"] == full.results["train"]["steps"] == 30
    assert abs(resumed.results["dev"]["accuracy"] - full.results["dev"]["accuracy"]) <= 0.005
    assert resumed.results["test"]["accuracy"] == pytest.approx(full.results["test"]["accuracy"], abs=0.005)
    # metrics.jsonl has no duplicated steps after the resume
    steps = [json.loads(x)["step"] for x in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
             if "loss" in x]
    assert steps == sorted(set(steps))


def test_resume_of_finished_run_is_a_no_op(tiny_model: str, toy_files: dict, tmp_path: Path) -> None:
    first = stepwise.train(**tiny_options(tiny_model, toy_files, tmp_path / "r", epochs=1))
    again = stepwise.train(**tiny_options(tiny_model, toy_files, tmp_path / "r", epochs=1, resume=True))
    assert again.results["dev"] == first.results["dev"]


def test_early_stopping_restores_best(tiny_model: str, toy_files: dict, tmp_path: Path) -> None:
    # With a negligible learning rate the dev metric never improves after the first evaluation, so patience 2
    # stops the run after the third epoch's evaluation instead of running all 20.
    run = stepwise.train(**tiny_options(tiny_model, toy_files, tmp_path / "r", epochs=20, lr=1e-9, patience=2,
                                        warmup_ratio=0.0, schedule="constant"))
    train = run.results["train"]
    assert train["stopped_early"] is True
    assert train["steps"] == 30 and train["best_step"] == 10
    assert run.results["dev"]["accuracy"] == pytest.approx(train["best_dev_accuracy"])


def test_grad_accum_and_max_steps(tiny_model: str, toy_files: dict, tmp_path: Path) -> None:
    run = stepwise.train(**tiny_options(tiny_model, toy_files, tmp_path / "a", epochs=2, batch_size=8, grad_accum=4))
    assert run.results["train"]["steps"] == 10  # 20 micro-batches per epoch / 4
    run = stepwise.train(**tiny_options(tiny_model, toy_files, tmp_path / "b", max_steps=7))
    assert run.results["train"]["steps"] == 7


def test_sgd_cosine_and_split(tiny_model: str, toy_files: dict, tmp_path: Path) -> None:
    options = tiny_options(tiny_model, toy_files, tmp_path / "r", optimizer="sgd", schedule="cosine", lr=0.05,
                           label_smoothing=0.1, dropout=0.0, epochs=1)
    del options["dev"], options["test"]
    run = stepwise.train(**options)
    splits = {name: (run.path / "splits" / f"{name}.jsonl").read_text().splitlines() for name in ("train", "dev",
                                                                                                  "test")}
    assert [len(v) for v in splits.values()] == [112, 32, 16]  # 7:2:1 of 160, per class
    for name in ("dev", "test"):
        labels = [json.loads(x)["label"] for x in splits[name]]
        assert labels.count("pos") == labels.count("neg")
    config = (run.path / "config.yaml").read_text()
    assert "optimizer: sgd" in config and "label_smoothing: 0.1" in config


def test_a_callback_can_stop_the_run(tiny_model: str, toy_files: dict, tmp_path: Path) -> None:
    seen = []

    def stop_at_seven(state: LoopState) -> bool:
        seen.append(state.step)
        return state.step == 7

    run = stepwise.train(**tiny_options(tiny_model, toy_files, tmp_path / "r", epochs=3), callbacks=(stop_at_seven,))
    assert seen == list(range(1, 8)) and run.results["train"]["steps"] == 7
    assert (run.path / "model" / "stepwise.json").exists() and "test" in run.results


def test_word_embeddings_train_by_default_and_stay_put_when_frozen(tiny_model: str, toy_files: dict,
                                                                    tmp_path: Path) -> None:
    from safetensors.torch import load_file

    def embeddings(path: Path, kind: str) -> torch.Tensor:
        weights = load_file(str(path / "model.safetensors"))
        return next(v for k, v in weights.items() if k.endswith(f"{kind}_embeddings.weight"))

    trained = stepwise.train(**tiny_options(tiny_model, toy_files, tmp_path / "trained", epochs=1))
    frozen = stepwise.train(**tiny_options(tiny_model, toy_files, tmp_path / "frozen", epochs=1,
                                           freeze_embeddings=True))
    pretrained = Path(tiny_model)
    assert not torch.equal(embeddings(trained.path / "model", "word"), embeddings(pretrained, "word"))
    assert torch.equal(embeddings(frozen.path / "model", "word"), embeddings(pretrained, "word"))
    assert not torch.equal(embeddings(frozen.path / "model", "position"), embeddings(pretrained, "position"))


def test_max_length_is_capped_at_the_encoders_positions(tiny_model: str, tmp_path: Path) -> None:
    """The tiny encoder embeds 128 positions; --max-length 256 (the default) used to crash on a long text at
    prediction time. Now the run uses 128 and says so."""
    import stepwise
    from tests.conftest import tiny_options, toy_splits

    run = stepwise.train(**tiny_options(tiny_model, toy_splits(tmp_path), tmp_path / "run", epochs=1))
    assert run.results["max_length"] == {"asked": 256, "used": 128, "why": "the encoder's position limit"}
    predictor = run.load()
    long_probs = predictor.predict_proba([" ".join(["good"] * 300)])  # crashed before
    cut_probs = predictor.predict_proba([" ".join(["good"] * 126)])  # what fits beside [CLS] and [SEP]
    assert predictor.max_length == 128 and long_probs == pytest.approx(cut_probs, abs=1e-5)
