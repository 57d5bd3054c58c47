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
    old_logprobs: list[float] | None = None
    """Log-probs at generation time; None means on-policy (taken from the current model)."""


class Trainer(Protocol):
    def step(self, samples: Sequence[Sample]) -> dict[str, float]:
        """One optimizer step over all ``samples``; returns metrics."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """The model's weights, for the rollout engine."""
        ...

    def save(self, folder: Path) -> None:
        """Model (HF safetensors) and optimizer state."""
        ...

    def load(self, folder: Path) -> None: ...
