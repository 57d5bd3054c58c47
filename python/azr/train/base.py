"""The trainer interface every backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class Sample:
    """One response to learn from: its tokens and its TRR++ advantage."""

    prompt_ids: list[int]
    response_ids: list[int]
    advantage: float


class Trainer(Protocol):
    def step(self, samples: Sequence[Sample], epochs: int = 1) -> dict[str, float]:
        """``epochs`` optimizer steps over all ``samples`` (one pass each); π_old
        of the clipped ratio is the policy before the first (its log-probs from
        the first pass), so with one epoch the update is exactly on-policy.
        Returns the last pass's metrics."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """The model's weights, for the rollout engine."""
        ...

    def save(self, folder: Path) -> None:
        """Model (HF safetensors) and optimizer state."""
        ...

    def load(self, folder: Path) -> None: ...
