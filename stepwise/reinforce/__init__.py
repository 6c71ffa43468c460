"""Reinforcement learning on the multi-step MDP: REINFORCE with a baseline, entropy bonus, KL penalty."""

from stepwise.reinforce.objective import ReinforceObjective
from stepwise.reinforce.rewards import get_reward

__all__ = ["ReinforceObjective", "get_reward"]
