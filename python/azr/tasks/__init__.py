"""Tasks of Absolute Zero: types, prompts, parsing, validation and rewards."""

from azr.tasks.types import ZERO_TRIPLET, InductionTask, Proposal, Role, SolverResult, TaskType, Triplet

__all__ = ["ZERO_TRIPLET", "InductionTask", "Proposal", "Role", "SolverResult", "TaskType", "Triplet"]
