"""Reinforcement learning on the multi-step MDP: REINFORCE with a baseline, entropy bonus, KL penalty."""

from stepwise.rl.reinforce import ReinforceObjective
from stepwise.rl.rewards import get_reward

__all__ = ["ReinforceObjective", "get_reward"]
