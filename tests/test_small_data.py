"""The small-data rule (issue 35): which runs get a head started from a linear probe, and that the probe is
copied into the head faithfully (its softmax is the regression's)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stepwise.training.probe_head import init_head_from_probe, probe_weights
from stepwise.training.small_data import SMALL_DATA_MAX, decide
from tests.conftest import tiny_options, toy_sentences, toy_splits


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(1, keepdims=True)


@pytest.mark.parametrize(("kind", "examples", "objective", "from_run", "enabled", "applied"), [
    ("classify", 298, "supervised", False, True, True),
    ("classify", SMALL_DATA_MAX, "supervised", False, True, True),
    ("classify", SMALL_DATA_MAX + 1, "supervised", False, True, False),
    ("tag", 298, "supervised", False, True, False),
    ("classify", 298, "reinforce", False, True, False),
    ("classify", 298, "distill", True, True, False),
    ("classify", 298, "supervised", False, False, False),
])
def test_rule_applies_to_small_classification_runs_only(kind, examples, objective, from_run, enabled, applied):
    choice = decide(kind, examples, objective, from_run, enabled)
    assert choice["applied"] is applied
    assert choice["chose"] == ({"head": "linear probe"} if applied else {})
    assert choice["examples"] == examples and choice["why"]


@pytest.mark.parametrize("classes", [2, 3])
def test_probe_weights_reproduce_the_regression(classes):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(classes, 8)) * 2
    y = np.repeat(np.arange(classes), 30)
    x = (centers[y] + rng.normal(size=(len(y), 8))).astype(np.float32)
    weight, bias = probe_weights(x, y, classes, c=10.0)
    expected = LogisticRegression(C=10.0, max_iter=2000).fit(x, y).predict_proba(x)
    assert weight.shape == (classes, 8) and bias.shape == (classes,)
    np.testing.assert_allclose(_softmax(x @ weight.T + bias), expected, atol=1e-4)


def test_a_class_the_probe_never_saw_is_never_predicted():
    rng = np.random.default_rng(1)
    y = np.repeat([0, 2], 20)
    x = (np.where(y[:, None] == 0, -1.0, 1.0) + rng.normal(size=(40, 4))).astype(np.float32)
    weight, bias = probe_weights(x, y, 3)
    assert set((x @ weight.T + bias).argmax(1)) <= {0, 2}


def test_the_head_predicts_what_the_probe_predicts(tiny_model):
    import torch

    from stepwise.model import TaskModel, load_tokenizer
    from stepwise.tasks import get_task

    rows = toy_sentences(48, 5, labels=("a", "b", "c"))
    from stepwise.example import Example

    examples = [Example(t, y, i) for i, (t, y) in enumerate(rows)]
    task, tokenizer = get_task("classify", ["a", "b", "c"]), load_tokenizer(tiny_model)
    features = task.encode(tokenizer, examples, 64)
    torch.manual_seed(0)
    model = TaskModel.from_encoder(tiny_model, 3, "mean")
    before = model.head.weight.detach().clone()
    info = init_head_from_probe(model, features, tokenizer.pad_token_id)
    assert not torch.equal(before, model.head.weight)
    model.eval()
    from stepwise.data.batching import collate

    with torch.no_grad():
        pred = model(**collate(features, tokenizer.pad_token_id)).argmax(1).numpy()
    gold = np.array([f["labels"] for f in features])
    assert info["train_accuracy"] == pytest.approx(float((pred == gold).mean()), abs=1e-4)
    assert info["train_accuracy"] > 1 / 3  # better than a constant guess on balanced classes


def test_probe_on_the_real_encoder_classifies_before_any_training_step(tmp_path):
    """On the bundled MiniLM the probed head already separates the toy sentiment (a sign error in the
    two-class weights, or rows copied to the wrong classes, would score far below this)."""
    import torch

    from stepwise.data.batching import collate
    from stepwise.example import Example
    from stepwise.model import TaskModel, load_tokenizer
    from stepwise.tasks import get_task

    task, tokenizer = get_task("classify", ["neg", "pos"]), load_tokenizer(None)
    train = [Example(t, y, i) for i, (t, y) in enumerate(toy_sentences(40, 1))]
    dev = [Example(t, y, i) for i, (t, y) in enumerate(toy_sentences(40, 2))]
    torch.manual_seed(0)
    model = TaskModel.from_encoder(None, 2, "mean")
    init_head_from_probe(model, task.encode(tokenizer, train, 64), tokenizer.pad_token_id)
    model.eval()
    features = task.encode(tokenizer, dev, 64)
    with torch.no_grad():
        pred = model(**collate(features, tokenizer.pad_token_id)).argmax(1).numpy()
    assert float((pred == np.array([f["labels"] for f in features])).mean()) >= 0.8


def test_results_record_what_the_rule_chose(tiny_model, tmp_path: Path):
    import stepwise

    files = toy_splits(tmp_path)
    on = stepwise.train(**tiny_options(tiny_model, files, tmp_path / "on", epochs=1))
    off = stepwise.train(**tiny_options(tiny_model, files, tmp_path / "off", epochs=1, small_data=False))
    chose = json.loads((tmp_path / "on" / "results.json").read_text())["small_data"]
    assert chose["applied"] and chose["chose"] == {"head": "linear probe"} and chose["examples"] == 160
    assert 0 <= chose["probe"]["train_accuracy"] <= 1 and chose["probe"]["seconds"] >= 0
    assert off.results["small_data"] == {**decide("classify", 160, "supervised", False, False)}
    assert on.results["small_data"]["applied"] and not off.results["small_data"]["applied"]
