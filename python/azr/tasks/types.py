"""The three task types and the two roles one model plays."""

from enum import Enum


class TaskType(str, Enum):
    """What the solver is given and must produce (SPEC §1)."""

    DEDUCTION = "deduction"  # given p and i, predict o
    ABDUCTION = "abduction"  # given p and o, find an i
    INDUCTION = "induction"  # given pairs and a message, write p


class Role(str, Enum):
    PROPOSE = "propose"
    SOLVE = "solve"
