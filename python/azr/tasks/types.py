"""Task types, roles, and the records that flow between proposer, sandbox and solver."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any


class TaskType(str, Enum):
    """What the solver is given and must produce (SPEC §1)."""

    DEDUCTION = "deduction"  # given p and i, predict o
    ABDUCTION = "abduction"  # given p and o, find an i
    INDUCTION = "induction"  # given pairs and a message, write p


class Role(str, Enum):
    PROPOSE = "propose"
    SOLVE = "solve"


@dataclass(frozen=True)
class Triplet:
    """A validated (program, input, output); the output is always the sandbox's repr."""

    program: str
    input: str
    output: str

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Triplet:
        return cls(str(record["program"]), str(record["input"]), str(record["output"]))


def record_problem(task: str, record: Any) -> str | None:
    """Why ``record`` cannot be a buffer entry of ``task`` (a ``TaskType`` value),
    or None: what a run reads from its buffer, checked where records come from
    outside (seed buffers and exports)."""
    if not isinstance(record, dict):
        return "not an object"
    if task == "induction":
        fields = {"program": str, "inputs": list, "outputs": list, "message": str}
    else:
        fields = {"program": str, "input": str, "output": str}
    for name, kind in fields.items():
        if not isinstance(record.get(name), kind):
            return f"{name!r} is missing or not a {kind.__name__}"
    if task == "induction":
        inputs, outputs = record["inputs"], record["outputs"]
        if not all(isinstance(x, str) for x in (*inputs, *outputs)):
            return "'inputs' and 'outputs' must hold strings"
        if len(inputs) != len(outputs) or not inputs:
            return "'inputs' and 'outputs' must be non-empty and of one length"
        visible = record.get("visible", 5)
        if type(visible) is not int or not 0 < visible < len(inputs):
            return f"'visible' must be an integer between 1 and {len(inputs) - 1}"
    return None


#: The zero triplet every run starts from (SPEC §6).
ZERO_TRIPLET = Triplet(program="def f(a):\n    return a", input="'Hello world'", output="'Hello world'")


@dataclass(frozen=True)
class InductionTask:
    """A program with inputs, their outputs and a message; solvers see the
    message and the visible pairs, and are checked on the hidden ones."""

    program: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    message: str
    visible: int = 5

    @property
    def visible_pairs(self) -> list[tuple[str, str]]:
        return list(zip(self.inputs[: self.visible], self.outputs[: self.visible], strict=True))

    @property
    def hidden_pairs(self) -> list[tuple[str, str]]:
        return list(zip(self.inputs[self.visible :], self.outputs[self.visible :], strict=True))

    def to_record(self) -> dict[str, Any]:
        return {
            "program": self.program,
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "message": self.message,
            "visible": self.visible,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> InductionTask:
        return cls(
            program=str(record["program"]),
            inputs=tuple(record["inputs"]),
            outputs=tuple(record["outputs"]),
            message=str(record["message"]),
            visible=int(record.get("visible", 5)),
        )


@dataclass
class Proposal:
    """What a proposer response parsed into, and what validation made of it."""

    task: TaskType
    format_ok: bool
    valid: bool = False
    reason: str | None = None
    program: str | None = None
    input: str | None = None
    output: str | None = None
    inputs: list[str] | None = None
    outputs: list[str] | None = None
    message: str | None = None


@dataclass
class SolverResult:
    """A graded solver response."""

    task: TaskType
    format_ok: bool
    correct: bool
    reward: float
    answer: str | None = None
    reason: str | None = None
