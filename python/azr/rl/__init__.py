"""Reinforcement learning: Task-Relative REINFORCE++ advantages and the policy loss (torch)."""
