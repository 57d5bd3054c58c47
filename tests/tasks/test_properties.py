"""Arbitrary text in, a verdict out, never an exception (hypothesis)."""

from __future__ import annotations

from azr.sandbox import Sandbox
from azr.tasks import parsing
from azr.tasks.types import TaskType, Triplet
from azr.tasks.validation import Graded, Rules, grade, parse_proposal, validate_proposals
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FRAGMENTS = st.sampled_from(
    [
        "<think>",
        "</think>",
        "<answer>",
        "</answer>",
        "```",
        "```python\n",
        "```input\n",
        "```output\n",
        "```message\n",
        "def f(",
        "def g(x):\n    return x\n",
        "\n",
        "    ",
        "return ",
        "(",
        ")",
        "'",
        '"',
        "\\",
        "0) or (True",
        "import os",
        "\x00",
        "é",
        "[[[[",
        "lambda",
        ":",
        ",",
    ]
)
TEXT = st.lists(st.one_of(FRAGMENTS, st.text(max_size=20)), max_size=30).map("".join)
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@given(text=TEXT, template=st.sampled_from(["r1", "chat"]))
@settings(max_examples=300, deadline=None)
def test_parsing_never_raises_anything_but_parse_error(text: str, template: str) -> None:
    try:
        answer = parsing.split_response(text, template).answer
    except parsing.ParseError:
        return
    for task in TaskType:
        try:
            parsing.solver_answer(task, answer)
            parsing.program_block(answer)
        except parsing.ParseError:
            pass


@given(text=TEXT, rules=st.sampled_from(["none", "one_function", "helpers"]))
@SETTINGS
def test_shaping_any_text_gives_a_program_or_a_syntax_error(sandbox: Sandbox, text: str, rules: str) -> None:
    for program in (text, f"def g(a):\n    {text}"):
        [result] = sandbox.shape_batch([(program, rules)])
        assert (result.ok and result.output) or (result.error and result.error.kind == "syntax"), result


@given(text=TEXT, task=st.sampled_from(list(TaskType)))
@SETTINGS
def test_proposals_always_get_a_verdict(sandbox: Sandbox, text: str, task: TaskType) -> None:
    for response in (text, f"x</think><answer>{text}</answer>"):
        p = parse_proposal(task, response, Rules(), program="def f(a):\n    return a")
        validate_proposals(sandbox, [p])
        assert p.valid or p.reason or not p.format_ok


@given(text=TEXT, task=st.sampled_from(list(TaskType)))
@SETTINGS
def test_answers_always_get_a_reward(sandbox: Sandbox, text: str, task: TaskType) -> None:
    from azr.tasks.types import InductionTask

    triplet = Triplet("def f(a):\n    return a", "1", "1")
    ind = InductionTask("def f(a):\n    return a", ("1",), ("1",), "identity", visible=0)
    for response in (text, f"x</think><answer>{text}</answer>"):
        [result] = grade(sandbox, [Graded(task, response, triplet=triplet, induction=ind)])
        assert result.reward in (1.0, -0.5, -1.0)
