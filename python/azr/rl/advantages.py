"""Task-Relative REINFORCE++ advantages (SPEC §5).

Rewards are normalized within each of the six (task type, role) groups, so a
proposer's learnability and a solver's accuracy are never compared with each
other's scale: for every sequence ``i`` in group ``g``

    A_i = (R_i − mean_g) / (std_g + ε)

``weighting="token"`` (default, the official code): mean and std are over the
response *tokens* of the group, each sequence's reward counted once per token
it generated, with Bessel's correction over the token count.
``weighting="sequence"`` (the paper's formula): over the group's sequences,
each counted once, with Bessel's correction over the sequence count.
A group with a single sequence (or a single token) has no spread: its
advantages are 0. The reward sits on the last token and γ = 1, so a
sequence's advantage applies to every one of its tokens.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Literal

import torch

Weighting = Literal["token", "sequence"]


def group_normalize(
    rewards: torch.Tensor,
    groups: Sequence[Hashable],
    lengths: torch.Tensor,
    weighting: Weighting = "token",
    eps: float = 1e-6,
) -> torch.Tensor:
    """Per-sequence advantages, normalized within each group.

    Args:
        rewards: ``[B]`` scalar reward per sequence.
        groups: ``B`` group keys, e.g. ``(TaskType.DEDUCTION, Role.SOLVE)``.
        lengths: ``[B]`` response tokens per sequence (used for ``"token"``).
    """
    if rewards.ndim != 1 or lengths.shape != rewards.shape or len(groups) != rewards.shape[0]:
        raise ValueError("rewards, lengths and groups must all have one entry per sequence")
    if weighting not in ("token", "sequence"):
        raise ValueError(f"weighting must be 'token' or 'sequence', got {weighting!r}")
    rewards = rewards.to(torch.float64)
    advantages = torch.zeros_like(rewards)
    index: dict[Hashable, list[int]] = {}
    for i, g in enumerate(groups):
        index.setdefault(g, []).append(i)
    for members in index.values():
        idx = torch.tensor(members, dtype=torch.long)
        r = rewards[idx]
        w = lengths[idx].to(torch.float64) if weighting == "token" else torch.ones_like(r)
        total = w.sum()
        if total <= 1:
            continue
        mean = (w * r).sum() / total
        var = (w * (r - mean) ** 2).sum() / (total - 1)
        advantages[idx] = (r - mean) / (var.sqrt() + eps)
    return advantages.to(torch.float32)


def expand_to_tokens(advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[B]`` sequence advantages to ``[B, T]`` token advantages (γ = 1)."""
    return advantages[:, None].to(mask.dtype if mask.is_floating_point() else torch.float32) * mask
