"""REINFORCE on the prediction MDP, as an objective for the shared training loop.

State = the input (and, for a refiner, the previous prediction); action = a label per text or a tag
per word, sampled from the policy; reward = the task's score of the sampled prediction. The gradient
is (R - b) * grad log pi(action), with b the greedy prediction's reward (self-critical) or a moving
average, plus an entropy bonus and a KL penalty that keeps the policy near the frozen supervised one.
Optionally the gold labels' cross-entropy is mixed in (`ce_coef`), so the policy keeps learning from
the labels while the reward shapes it toward the metric.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F

from stepwise.example import IGNORE_INDEX
from stepwise.precision import autocast
from stepwise.reinforce.rewards import Reward
from stepwise.tasks.base import Task


def action_slots(logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits as (B, S, C) action slots with a (B, S) mask: one slot per text, or one per word."""
    if logits.dim() == 2:
        return logits[:, None, :], torch.ones(logits.shape[0], 1, dtype=torch.bool)
    if "word_mask" in batch:
        return logits, batch["word_mask"].bool()
    return logits, batch["labels"] != IGNORE_INDEX


class ReinforceObjective:
    def __init__(self, task: Task, reference: torch.nn.Module, reward: Reward | None, *, baseline: str,
                 entropy_coef: float, kl_coef: float, precision: str, ce_coef: float = 0.0,
                 momentum: float = 0.9, outcomes: Any = None) -> None:
        if baseline not in ("self-critical", "moving-average"):
            raise ValueError(f"unknown baseline {baseline!r}")
        self.task, self.reward, self.baseline = task, reward, baseline
        self.entropy_coef, self.kl_coef, self.precision, self.momentum = entropy_coef, kl_coef, precision, momentum
        self.ce_coef = ce_coef
        self.outcomes = outcomes  # Task.action_outcomes: actions that build the prediction (editing)
        self.reference = copy.deepcopy(reference).eval()
        for p in self.reference.parameters():
            p.requires_grad_(False)
        self.average: float | None = None

    def _labels(self, ids: torch.Tensor, mask: torch.Tensor, single: bool) -> list[Any]:
        rows = [self.task.ids_to_labels(r[m].tolist()) for r, m in zip(ids, mask)]
        return [r[0] for r in rows] if single else rows

    def _tags(self, ids: torch.Tensor, mask: torch.Tensor) -> list[list[str]]:
        return [[self.task.labels[i] for i in r[m].tolist()] for r, m in zip(ids, mask)]

    def __call__(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        with autocast(self.precision):
            logits = model(**batch)
        with torch.no_grad(), autocast(self.precision):
            ref_logits = self.reference(**batch)
        single = logits.dim() == 2
        ce = self.task.loss(logits, batch, 0.0) if self.ce_coef else None
        logits, mask = action_slots(logits.float(), batch)
        ref_logp = F.log_softmax(action_slots(ref_logits.float(), batch)[0], dim=-1)
        logp = F.log_softmax(logits, dim=-1)
        with torch.no_grad():
            sampled = torch.distributions.Categorical(logits=logits).sample()
            greedy = logits.argmax(-1)
        gold_ids = batch["labels"][:, None] if single else batch["labels"]
        maskf = mask.float()
        taken = logp.gather(-1, sampled[..., None]).squeeze(-1)
        seq_logp = (taken * maskf).sum(1)
        if self.reward is None:  # log-likelihood under the frozen supervised policy, per slot
            ref_taken = ref_logp.gather(-1, sampled[..., None]).squeeze(-1)
            rewards = ((ref_taken * maskf).sum(1) / maskf.sum(1).clamp(min=1)).tolist()
            greedy_taken = ref_logp.gather(-1, greedy[..., None]).squeeze(-1)
            greedy_rewards = ((greedy_taken * maskf).sum(1) / maskf.sum(1).clamp(min=1)).tolist()
        else:
            if self.outcomes is not None:
                pair_ids, n = batch["pair_id"].tolist(), len(sampled)
                both, gold = self.outcomes(pair_ids * 2, self._tags(sampled, mask) + self._tags(greedy, mask))
                preds, greedy_preds, gold = both[:n], both[n:], gold[:n]
            else:
                gold = self._labels(gold_ids, mask, single)
                preds, greedy_preds = self._labels(sampled, mask, single), self._labels(greedy, mask, single)
            rewards = [self.reward(p, g) for p, g in zip(preds, gold)]
            greedy_rewards = ([self.reward(p, g) for p, g in zip(greedy_preds, gold)]
                              if self.baseline == "self-critical" else [])
        reward_t = torch.tensor(rewards)
        if self.baseline == "self-critical":
            base = torch.tensor(greedy_rewards)
        else:
            base = torch.full_like(reward_t, reward_t.mean().item() if self.average is None else self.average)
            mean = reward_t.mean().item()
            self.average = mean if self.average is None else self.momentum * self.average + (1 - self.momentum) * mean
        advantage = reward_t - base
        probs = logp.exp()
        n_slots = maskf.sum().clamp(min=1)
        entropy = (-(probs * logp).sum(-1) * maskf).sum() / n_slots
        kl = ((probs * (logp - ref_logp)).sum(-1) * maskf).sum() / n_slots
        policy_loss = -(advantage * seq_logp).mean()
        loss = policy_loss - self.entropy_coef * entropy + self.kl_coef * kl
        logs = {"reward_mean": reward_t.mean().item(), "reward_std": reward_t.std(unbiased=False).item(),
                "baseline": base.mean().item(), "entropy": entropy.item(), "kl": kl.item()}
        if ce is not None:
            loss = loss + self.ce_coef * ce
            logs["ce"] = ce.item()
        return loss, logs
