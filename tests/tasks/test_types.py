"""Task records read from outside a run (seed buffers, exports) are checked against their task type."""

from __future__ import annotations

from typing import Any

import pytest
from azr.tasks.types import ZERO_TRIPLET, InductionTask, Triplet, record_problem

EXAMPLE = InductionTask(
    "def f(a):\n    return a * 2",
    tuple(str(i) for i in range(10)),
    tuple(str(2 * i) for i in range(10)),
    "doubles its input",
)


@pytest.mark.parametrize(
    ("task", "record", "problem"),
    [
        ("deduction", ZERO_TRIPLET.to_record(), None),
        ("abduction", {"program": "p", "input": "1"}, "'output' is missing"),
        ("deduction", [1], "not an object"),
        ("induction", EXAMPLE.to_record(), None),
        ("induction", {**EXAMPLE.to_record(), "inputs": ["1", 2]}, "must hold strings"),
        ("induction", {**EXAMPLE.to_record(), "outputs": ["1"]}, "of one length"),
        ("induction", {**EXAMPLE.to_record(), "visible": 10}, "'visible' must be"),
        ("induction", {**EXAMPLE.to_record(), "message": None}, "'message' is missing"),
    ],
)
def test_records_from_outside_are_checked_against_their_task(
    task: str, record: Any, problem: str | None
) -> None:
    got = record_problem(task, record)
    assert got is None if problem is None else problem in str(got)
    if got is None:  # what a run then reads from it
        (InductionTask if task == "induction" else Triplet).from_record(record)
