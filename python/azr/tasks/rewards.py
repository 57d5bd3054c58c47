"""Rewards of SPEC §4, as plain functions."""

from __future__ import annotations

SOLVER_CORRECT = 1.0
SOLVER_WRONG = -0.5
FORMAT_ERROR = -1.0
#: What a valid proposal earns when its solve rate is 0 or 1 (official code; the paper uses 0).
UNLEARNABLE = -0.5


def solver_reward(format_ok: bool, correct: bool) -> float:
    """+1 correct, −0.5 well formatted but wrong, −1 badly formatted."""
    if not format_ok:
        return FORMAT_ERROR
    return SOLVER_CORRECT if correct else SOLVER_WRONG


def learnability_reward(solve_rate: float, unlearnable_reward: float = UNLEARNABLE) -> float:
    """``1 − acc`` for tasks the solver sometimes solves; ``unlearnable_reward`` otherwise."""
    if not 0.0 <= solve_rate <= 1.0:
        raise ValueError(f"a solve rate is in [0, 1], got {solve_rate}")
    if 0.0 < solve_rate < 1.0:
        return 1.0 - solve_rate
    return unlearnable_reward


def proposer_reward(
    format_ok: bool, valid: bool, solve_rate: float | None, unlearnable_reward: float = UNLEARNABLE
) -> float:
    """−1 for a badly formatted or invalid proposal, else its learnability."""
    if not (format_ok and valid):
        return FORMAT_ERROR
    if solve_rate is None:
        raise ValueError("a valid proposal needs the solve rate of its rollouts")
    return learnability_reward(solve_rate, unlearnable_reward)
