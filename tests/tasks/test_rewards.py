"""The reward table of SPEC §4."""

from __future__ import annotations

import pytest
from azr.tasks.rewards import learnability_reward, proposer_reward, solver_reward


@pytest.mark.parametrize(
    ("format_ok", "correct", "reward"), [(True, True, 1.0), (True, False, -0.5), (False, False, -1.0)]
)
def test_solver_rewards(format_ok: bool, correct: bool, reward: float) -> None:
    assert solver_reward(format_ok, correct) == reward


@pytest.mark.parametrize(
    ("acc", "reward"), [(0.0, -0.5), (1.0, -0.5), (0.125, 0.875), (0.5, 0.5), (7 / 8, 0.125)]
)
def test_learnability(acc: float, reward: float) -> None:
    assert learnability_reward(acc) == pytest.approx(reward)


def test_unlearnable_value_is_configurable() -> None:
    assert learnability_reward(0.0, unlearnable_reward=0.0) == 0.0
    assert learnability_reward(1.0, unlearnable_reward=0.0) == 0.0


def test_proposer_rewards() -> None:
    assert proposer_reward(False, False, None) == -1.0
    assert proposer_reward(True, False, None) == -1.0
    assert proposer_reward(True, True, 0.25) == 0.75
    with pytest.raises(ValueError):
        proposer_reward(True, True, None)
    with pytest.raises(ValueError):
        learnability_reward(1.5)
