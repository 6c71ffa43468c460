"""Multi-step refinement: the engine's stop rules and keep-best, a refiner that learns to correct,
and the CLI's per-step report, output order and trace."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import numpy as np
import pytest

import stepwise
from stepwise.cli import main
from stepwise.refine import refine
from stepwise.refine.policy import ModelPolicy
from stepwise.tasks.tag.conll import read_conll
from tests.conftest import tiny_options, toy_ner, write_conll


class Scripted:
    """A policy that plays back fixed predictions and scores per example and step."""

    def __init__(self, preds: list[list[int]], scores: list[list[float]], delay: float = 0.0) -> None:
        self.preds, self.scores, self.delay, self.calls = preds, scores, delay, []
        self.seen: dict[int, int] = {}

    def act(self, indices, previous):
        time.sleep(self.delay)
        self.calls.append((list(indices), list(previous)))
        out_p, out_s = [], []
        for i in indices:
            t = self.seen.get(i, 0)
            self.seen[i] = t + 1
            out_p.append(self.preds[i][t])
            out_s.append(self.scores[i][t])
        return out_p, out_s, out_p


def test_stops_when_prediction_no_longer_changes() -> None:
    policy = Scripted([[1, 2, 2, 3], [5, 5, 5, 5]], [[0.1] * 4, [0.1] * 4])
    result = refine(policy, 2, steps=4)
    assert result.steps_used == [3, 2]
    assert result.predictions == [2, 5]
    assert policy.calls[0] == ([0, 1], [None, None])  # step 1 sees "no prediction yet"
    assert policy.calls[1] == ([0, 1], [1, 5])  # step t sees step t-1
    assert policy.calls[2] == ([0], [2])
    assert [s.changed for s in result.stats] == [0.0, 0.5, 0.0]
    assert result.at_step(1) == [1, 5] and result.at_step(4) == [2, 5]


def test_confidence_threshold_and_keep_best() -> None:
    policy = Scripted([[1, 2, 3], [7, 8, 9]], [[0.5, 0.9, 0.7], [0.99, 0.1, 0.1]])
    result = refine(policy, 2, steps=3, confidence=0.95, stop_on_no_change=False)
    assert result.steps_used == [3, 1]
    best = refine(Scripted([[1, 2, 3]], [[0.5, 0.9, 0.7]]), 1, steps=3, keep="best", stop_on_no_change=False)
    assert best.predictions == [2] and best.chosen_step == [2]
    last = refine(Scripted([[1, 2, 3]], [[0.5, 0.9, 0.7]]), 1, steps=3, stop_on_no_change=False)
    assert last.predictions == [3] and last.chosen_step == [3]


def test_time_budget_stops_new_steps() -> None:
    policy = Scripted([list(range(10))], [[0.0] * 10], delay=0.05)
    result = refine(policy, 1, steps=10, time_budget_ms=120)
    assert 2 <= result.steps_used[0] <= 4
    assert result.stats[-1].seconds >= 0.1


@pytest.fixture(scope="module")
def refiner_run(tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("refiner")
    files = {"train": write_conll(tmp / "train.conll", toy_ner(300, 1)),
             "dev": write_conll(tmp / "dev.conll", toy_ner(40, 2)),
             "test": write_conll(tmp / "test.conll", toy_ner(40, 3))}
    options = tiny_options(tiny_model, files, tmp / "run", task="tag", epochs=10, refine_steps=3, refine_noise=0.3)
    return stepwise.train(**options).path


def test_refiner_learns_to_fix_a_corrupted_previous_prediction(refiner_run: Path) -> None:
    predictor = stepwise.load(refiner_run, precision="fp32")
    assert predictor.is_refiner and predictor.steps == 3
    task = predictor.task
    sentences = toy_ner(60, 21)
    examples = [stepwise.Example(w, t) for w, t in sentences]
    features = task.encode(predictor.tokenizer, examples, predictor.max_length, with_labels=False)
    policy = ModelPolicy(predictor.backend, task, examples, features, batch_size=16,
                         pad_id=predictor.tokenizer.pad_token_id)
    rng = random.Random(0)
    gold = [np.array([task.label_to_id[t] for t in tags]) for _, tags in sentences]
    corrupted = []
    for ids in gold:
        bad = ids.copy()
        for j in range(len(bad)):
            if rng.random() < 0.3:
                bad[j] = rng.randrange(len(task.labels))
        corrupted.append(bad)
    fixed, _, _ = policy.act(list(range(len(examples))), corrupted)
    before = np.mean(np.concatenate([c == g for c, g in zip(corrupted, gold)]))
    after = np.mean(np.concatenate([f == g for f, g in zip(fixed, gold)]))
    assert before < 0.85 and after > before + 0.1, (before, after)


def test_evaluate_reports_every_step(refiner_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = write_conll(tmp_path / "eval.conll", toy_ner(30, 8))
    plot = tmp_path / "steps.png"
    assert main(["evaluate", str(refiner_run), "--data", str(data), "--steps", "3", "--json", "--plot",
                 str(plot)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 1 <= len(result["steps"]) <= 3 and result["steps"][0]["step"] == 1
    assert {"f1", "changed", "seconds", "ms_per_example", "active"} <= set(result["steps"][0])
    assert 1.0 <= result["mean_steps"] <= 3.0
    assert result["steps"][-1]["f1"] == pytest.approx(result["f1"])
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_predict_keeps_input_order_and_writes_trace(refiner_run: Path, tmp_path: Path) -> None:
    sentences = toy_ner(12, 4)
    data = write_conll(tmp_path / "in.conll", sentences)
    out, trace = tmp_path / "out.conll", tmp_path / "trace.jsonl"
    assert main(["predict", str(refiner_run), "--input", str(data), "--format", "conll", "--output", str(out),
                 "--steps", "3", "--keep", "best", "--trace", str(trace)]) == 0
    assert [s.text for s in read_conll(out, tag_column=1)] == [w for w, _ in sentences]
    records = [json.loads(x) for x in trace.read_text().splitlines()]
    assert [r["index"] for r in records] == list(range(12))
    for record, (words, _) in zip(records, sentences):
        assert 1 <= len(record["steps"]) <= 3 and 1 <= record["chosen_step"] <= len(record["steps"])
        assert all(len(s["prediction"]) == len(words) for s in record["steps"])
        best = max(range(len(record["steps"])), key=lambda k: record["steps"][k]["score"])
        assert record["chosen_step"] == best + 1


def test_classification_refiner_runs(tiny_model: str, toy_files: dict, tmp_path: Path) -> None:
    run = stepwise.train(**tiny_options(tiny_model, toy_files, tmp_path / "r", epochs=6, refine_steps=2))
    assert run.results["test"]["accuracy"] >= 0.9
    predictor = stepwise.load(run.path)
    result = predictor.refine([stepwise.Example("the film was excellent", None)], steps=2)
    assert result.steps_used[0] in (1, 2) and predictor.task.ids_to_labels(result.predictions[0]) == "pos"


def test_bad_steps_flag(refiner_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = write_conll(tmp_path / "eval.conll", toy_ner(3, 8))
    assert main(["evaluate", str(refiner_run), "--data", str(data), "--steps", "0"]) == 2
    assert "--steps must be at least 1" in capsys.readouterr().err


def test_a_prediction_that_returns_to_an_earlier_one_stops() -> None:
    """A → B → A: a third step would only cycle."""
    from stepwise.refine import refine

    class Flip:
        def act(self, indices, previous):
            return ([("b",) if p == ("a",) else ("a",) for p in previous], [1.0] * len(indices), [None] * len(indices))

    result = refine(Flip(), 1, steps=6, initial=[("a",)])
    assert result.steps_used == [2] and result.history[0] == [("b",), ("a",)]
