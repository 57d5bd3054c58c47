"""Proposals and answers through the sandbox: SPEC §3, implemented on top of
``azr.sandbox`` (which runs every check; this module only parses and routes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from azr.sandbox import ExecResult, Sandbox
from azr.tasks import parsing
from azr.tasks.parsing import ParseError
from azr.tasks.rewards import solver_reward
from azr.tasks.types import InductionTask, Proposal, SolverResult, TaskType, Triplet


@dataclass(frozen=True)
class Rules:
    """Proposal rules that are configurable."""

    #: Reject programs with more than one function or any class (official default).
    single_function: bool = True
    #: Inputs an induction proposal must give.
    induction_inputs: int = 10
    #: How many of them the solver sees; the rest are hidden and checked.
    induction_visible: int = 5
    #: Template the responses were generated with (``r1`` responses start inside ``<think>``).
    template: str = "r1"


def parse_proposal(task: TaskType, response: str, rules: Rules, program: str | None = None) -> Proposal:
    """Parse a proposer response without running anything. The program is
    parsed later, by the sandbox's Python (``validate_proposals``)."""
    try:
        answer = parsing.split_response(response, rules.template).answer
    except ParseError as exc:
        return Proposal(task, format_ok=False, reason=str(exc))
    proposal = Proposal(task, format_ok=True)
    try:
        if task is TaskType.INDUCTION:
            if program is None:
                raise ParseError("an induction proposal needs the program it was shown")
            proposal.program = program
            proposal.inputs = [b.strip() for b in parsing.blocks_of(answer, "input")]
            messages = parsing.blocks_of(answer, "message")
            proposal.message = messages[-1].strip() if messages else None
            _check_induction_shape(proposal, rules)
        else:
            proposal.program = parsing.program_block(answer)
            inputs = parsing.blocks_of(answer, "input")
            if not inputs or not inputs[-1].strip():
                raise ParseError("no ```input block")
            proposal.input = inputs[-1].strip()
    except ParseError as exc:
        proposal.reason = str(exc)
    return proposal


_CODE_MARKS = frozenset("()[]{}=:")


def _message_reveals_code(message: str, program: str) -> bool:
    """The message copies the program: ``def f``, or a whole line of it that
    reads as code (brackets, ``=`` or ``:``) or is long. A short line such as
    ``return False`` is also plain English and does not count."""

    def telling(line: str) -> bool:
        return len(line) >= 30 or (len(line) >= 12 and not _CODE_MARKS.isdisjoint(line))

    lines = {line.strip() for line in program.splitlines()}
    return "def f" in message or any(telling(line) and line in message for line in lines)


def _check_induction_shape(p: Proposal, rules: Rules) -> None:
    assert p.inputs is not None and p.program is not None
    if len(p.inputs) != rules.induction_inputs:
        raise ParseError(f"expected {rules.induction_inputs} ```input blocks, got {len(p.inputs)}")
    if len(set(p.inputs)) != len(p.inputs):
        raise ParseError("the inputs must be different from each other")
    if not p.message:
        raise ParseError("no ```message block")
    if _message_reveals_code(p.message, p.program):
        raise ParseError("the message contains the program's code")


def validate_proposals(
    sandbox: Sandbox, proposals: Sequence[Proposal], rules: Rules | None = None
) -> list[Proposal]:
    """Run every parsed proposal through the sandbox's proposal checks, in
    parallel batches; fills ``valid``, ``reason`` and the outputs in place.

    First the program's shape, decided by the sandbox's Python (the host's may
    be older and refuse newer syntax): the entry renamed to ``f`` and the entry
    rules. Then the runs: every check of SPEC §3."""
    rules = rules or Rules()
    entry_rules = "one_function" if rules.single_function else "helpers"
    to_shape = [
        p
        for p in proposals
        if p.format_ok and p.reason is None and p.program is not None and p.task is not TaskType.INDUCTION
    ]
    shapes = sandbox.shape_batch([(p.program or "", entry_rules) for p in to_shape])
    for p, shape in zip(to_shape, shapes, strict=True):
        if shape.error is not None:
            p.reason = shape.error.message
        else:
            p.program = shape.output
    jobs: list[tuple[str, str]] = []
    owners: list[int] = []
    for index, p in enumerate(proposals):
        if not p.format_ok or p.reason is not None or p.program is None:
            continue
        args = (p.inputs or []) if p.task is TaskType.INDUCTION else [p.input or ""]
        for arg in args:
            jobs.append((p.program, arg))
            owners.append(index)
    results = sandbox.validate_batch(jobs)
    by_owner: dict[int, list[ExecResult]] = {}
    for owner, result in zip(owners, results, strict=True):
        by_owner.setdefault(owner, []).append(result)
    for index, runs in by_owner.items():
        p = proposals[index]
        failed = next((r for r in runs if not r.ok), None)
        if failed is not None:
            assert failed.error is not None
            p.reason = f"{failed.error.kind}: {failed.error.message}"
            continue
        outputs = [r.output or "" for r in runs]
        if p.task is TaskType.INDUCTION:
            p.outputs = outputs
        else:
            p.output = outputs[0]
        p.valid = True
    return list(proposals)


def as_triplet(p: Proposal) -> Triplet:
    assert p.valid and p.program is not None and p.input is not None and p.output is not None
    return Triplet(p.program, p.input, p.output)


def as_induction(p: Proposal, rules: Rules | None = None) -> InductionTask:
    """The 5/5 split: the first ``induction_visible`` pairs are shown, the rest hidden."""
    rules = rules or Rules()
    assert p.valid and p.program and p.inputs and p.outputs and p.message
    return InductionTask(p.program, tuple(p.inputs), tuple(p.outputs), p.message, rules.induction_visible)


@dataclass(frozen=True)
class Graded:
    """One solver response against its task."""

    task: TaskType
    response: str
    triplet: Triplet | None = None
    induction: InductionTask | None = None


def grade(sandbox: Sandbox, items: Sequence[Graded], rules: Rules | None = None) -> list[SolverResult]:
    """Grade solver responses: format, answer extraction, then the sandbox's
    check (in parallel batches per task type). Never raises on model text."""
    rules = rules or Rules()
    results: list[SolverResult | None] = [None] * len(items)
    pending: dict[TaskType, list[tuple[int, str]]] = {t: [] for t in TaskType}
    for index, item in enumerate(items):
        try:
            answer = parsing.split_response(item.response, rules.template).answer
        except ParseError as exc:
            results[index] = SolverResult(
                item.task, False, False, solver_reward(False, False), None, str(exc)
            )
            continue
        try:
            extracted = parsing.solver_answer(item.task, answer)
        except ParseError as exc:
            results[index] = SolverResult(item.task, True, False, solver_reward(True, False), None, str(exc))
            continue
        pending[item.task].append((index, extracted))
    # An induction answer's entry function is renamed to f, by the sandbox's parser.
    programs = pending[TaskType.INDUCTION]
    shapes = sandbox.shape_batch([(program, "none") for _, program in programs])
    pending[TaskType.INDUCTION] = []
    for (index, _), shape in zip(programs, shapes, strict=True):
        if shape.error is not None or shape.output is None:
            why = shape.error.message if shape.error else "no program"
            results[index] = SolverResult(
                TaskType.INDUCTION, True, False, solver_reward(True, False), None, why
            )
        else:
            pending[TaskType.INDUCTION].append((index, shape.output))
    for task, batch in pending.items():
        if not batch:
            continue
        if task is TaskType.DEDUCTION:
            verdicts = sandbox.check_deduction_batch([(_triplet(items[i]).output, a) for i, a in batch])
        elif task is TaskType.ABDUCTION:
            verdicts = sandbox.check_abduction_batch(
                [(_triplet(items[i]).program, _triplet(items[i]).output, a) for i, a in batch]
            )
        else:
            verdicts = sandbox.check_induction_batch(
                [
                    (
                        a,
                        [i for i, _ in _induction(items[k]).hidden_pairs],
                        [o for _, o in _induction(items[k]).hidden_pairs],
                    )
                    for k, a in batch
                ]
            )
        for (index, answer), verdict in zip(batch, verdicts, strict=True):
            reason = (
                None
                if verdict.correct
                else (f"{verdict.error.kind}: {verdict.error.message}" if verdict.error else "wrong answer")
            )
            results[index] = SolverResult(
                task, True, verdict.correct, solver_reward(True, verdict.correct), answer, reason
            )
    return [r for r in results if r is not None]


def _triplet(item: Graded) -> Triplet:
    if item.triplet is None:
        raise ValueError(f"a {item.task.value} answer needs its triplet")
    return item.triplet


def _induction(item: Graded) -> InductionTask:
    if item.induction is None:
        raise ValueError("an induction answer needs its task")
    return item.induction
