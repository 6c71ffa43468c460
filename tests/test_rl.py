"""REINFORCE on the prediction MDP: the update direction, the KL anchor, reward plug-ins, the rl command."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import stepwise
from stepwise.cli import main
from stepwise.errors import StepwiseError
from stepwise.reinforce.objective import ReinforceObjective
from stepwise.reinforce.rewards import accuracy, bleu, entity_f1, get_reward, rouge_l
from stepwise.tasks import get_task
from tests.conftest import tiny_options, toy_ner, write_conll


class Bandit(nn.Module):
    """A policy over 3 labels with no input: its logits are its only parameters."""

    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(logits))
        self.extra_inputs: dict[str, int] = {}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(input_ids.shape[0], -1)


def bandit_batch(n: int = 64, gold: int = 2) -> dict[str, torch.Tensor]:
    return {"input_ids": torch.zeros(n, 1, dtype=torch.long), "attention_mask": torch.ones(n, 1, dtype=torch.long),
            "labels": torch.full((n,), gold)}


def train_bandit(reward, steps: int, baseline: str, kl: float, entropy: float = 0.0, start=(0.0, 0.0, 0.0),
                 ce: float = 0.0):
    torch.manual_seed(0)
    task = get_task("classify", ["a", "b", "c"])
    policy = Bandit(list(start))
    objective = ReinforceObjective(task, policy, reward, baseline=baseline, entropy_coef=entropy, kl_coef=kl,
                                   precision="fp32", ce_coef=ce)
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.5)
    logs = {}
    for _ in range(steps):
        loss, logs = objective(policy, bandit_batch())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return torch.softmax(policy.logits.detach(), -1), logs


@pytest.mark.parametrize("baseline", ["self-critical", "moving-average"])
def test_reinforce_moves_probability_toward_the_rewarded_action(baseline: str) -> None:
    probs, logs = train_bandit(accuracy, 40, baseline, kl=0.0)
    assert probs[2] > 0.8, probs  # label "c" (gold) is the only rewarded action
    assert {"reward_mean", "reward_std", "baseline", "entropy", "kl"} <= set(logs)


def test_kl_penalty_keeps_policy_at_reference_under_constant_reward() -> None:
    start = (1.0, 0.0, -1.0)
    reference = torch.softmax(torch.tensor(start), -1)
    probs, logs = train_bandit(lambda p, g: 1.0, 40, "moving-average", kl=1.0, start=start)
    assert torch.allclose(probs, reference, atol=0.02), (probs, reference)
    assert logs["kl"] < 1e-3
    # without the anchor, the entropy bonus alone drifts the policy away from the reference
    drifted, _ = train_bandit(lambda p, g: 1.0, 40, "moving-average", kl=0.0, entropy=0.5, start=start)
    assert not torch.allclose(drifted, reference, atol=0.05)


def test_cross_entropy_mix_learns_from_gold_labels_without_a_reward_signal() -> None:
    # A constant reward gives zero advantage, so only the mixed-in cross-entropy can move the policy.
    still, logs = train_bandit(lambda p, g: 1.0, 30, "self-critical", kl=0.0)
    assert torch.allclose(still, torch.full((3,), 1 / 3), atol=1e-4) and "ce" not in logs
    moved, logs = train_bandit(lambda p, g: 1.0, 30, "self-critical", kl=0.0, ce=1.0)
    assert moved[2] > 0.9, moved
    assert logs["ce"] < 0.2


def test_built_in_rewards() -> None:
    assert accuracy("a", "a") == 1.0 and accuracy(["O", "B-PER"], ["O", "O"]) == 0.5
    assert entity_f1(["B-PER", "I-PER", "O"], ["B-PER", "I-PER", "O"]) == 1.0
    assert entity_f1(["B-PER", "O", "B-LOC"], ["B-PER", "O", "O"]) == pytest.approx(2 / 3)
    assert entity_f1(["O"], ["O"]) == 1.0
    assert bleu("the cat sat on the mat", "the cat sat on the mat") == pytest.approx(1.0)
    assert 0 < rouge_l("the cat sat", "the cat sat on the mat") < 1
    assert get_reward("loglik") is None


def test_user_reward_validation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "myrewards.py").write_text(
        "def good(p, g):\n    return 0.5\n"
        "def boom(p, g):\n    raise RuntimeError('no')\n"
        "def text(p, g):\n    return 'high'\n"
        "def wide(p, g):\n    return 2.0\n"
        "wide.reward_range = (0, 1)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("myrewards", None)
    assert get_reward("myrewards:good")("a", "a") == 0.5
    with pytest.raises(StepwiseError, match="reward myrewards:boom raised RuntimeError: no"):
        get_reward("myrewards:boom")("a", "a")
    with pytest.raises(StepwiseError, match="returned 'high', not a number"):
        get_reward("myrewards:text")("a", "a")
    with pytest.raises(StepwiseError, match=r"outside its declared range \(0, 1\)"):
        get_reward("myrewards:wide")("a", "a")
    with pytest.raises(StepwiseError, match="cannot load reward"):
        get_reward("myrewards:missing")
    with pytest.raises(StepwiseError, match="unknown reward"):
        get_reward("f2")


def test_rl_command_on_a_tagging_run(tiny_model: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    files = {"train": write_conll(tmp_path / "train.conll", toy_ner(200, 1)),
             "dev": write_conll(tmp_path / "dev.conll", toy_ner(40, 2)),
             "test": write_conll(tmp_path / "test.conll", toy_ner(40, 3))}
    base = stepwise.train(**tiny_options(tiny_model, files, tmp_path / "sup", task="tag", epochs=3))
    code = main(["rl", str(base.path), "--train", str(files["train"]), "--dev", str(files["dev"]), "--test",
                 str(files["test"]), "--out", str(tmp_path / "rl"), "--reward", "entity_f1", "--epochs", "1",
                 "--precision", "fp32", "--quiet", "--json", "--batch-size", "16", "--threads", "1"])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["task"] == "tag" and "f1" in result["test"] and "best_dev_reward" in result["train"]
    records = [json.loads(x) for x in (tmp_path / "rl" / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in records if "loss" in r]
    assert logged and {"reward_mean", "reward_std", "kl", "entropy", "baseline"} <= set(logged[0])
    assert any("reward" in r.get("dev", {}) for r in records)
    assert (tmp_path / "rl" / "curves.png").exists()
    config = (tmp_path / "rl" / "config.yaml").read_text()
    assert "reward: entity_f1" in config and "init_from:" in config


def test_rl_bad_reward_is_one_line(tiny_model: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    files = {"train": write_conll(tmp_path / "train.conll", toy_ner(20, 1))}
    base = stepwise.train(**tiny_options(tiny_model, {**files, "dev": files["train"], "test": files["train"]},
                                         tmp_path / "sup", task="tag", epochs=1))
    code = main(["rl", str(base.path), "--train", str(files["train"]), "--dev", str(files["train"]), "--out",
                 str(tmp_path / "rl"), "--reward", "nosuchmodule:f", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "cannot load reward 'nosuchmodule:f'" in err and "\n" not in err


def test_train_with_a_reward_optimizes_it(tiny_model: str, toy_files: dict, tmp_path: Path) -> None:
    """`stepwise train --reward R` is REINFORCE from the pretrained encoder, early-stopped on the dev reward."""
    run = stepwise.train(**tiny_options(tiny_model, toy_files, tmp_path / "r", epochs=1, reward="accuracy"))
    assert "best_dev_reward" in run.results["train"]
    logged = [json.loads(x) for x in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert any("reward_mean" in r for r in logged) and any("reward" in r.get("dev", {}) for r in logged)
