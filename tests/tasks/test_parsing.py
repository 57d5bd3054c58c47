"""Parsing model text: the format check, blocks, every fallback and failure path."""

from __future__ import annotations

import pytest
from azr.tasks import parsing
from azr.tasks.parsing import ParseError
from azr.tasks.types import TaskType


def r1(answer: str, think: str = "let me see") -> str:
    """What a model writes after an r1 prompt (which ends with `<think>`)."""
    return f"{think}</think>\n<answer>{answer}</answer>"


def test_format_check_accepts_think_then_answer() -> None:
    assert parsing.split_response(r1("42")).answer == "42"
    assert parsing.split_response("<think>x</think><answer>7</answer>", "chat").answer == "7"
    assert parsing.split_response("  <think>x</think>\n\n<answer>7</answer>\n", "chat").think == "x"


@pytest.mark.parametrize(
    "text",
    [
        "no tags at all",
        "thinking</think> no answer",
        "<answer>1</answer>",
        "x</think><answer>1</answer> trailing words",
        "x</think><answer>1",
        "x<answer>1</answer>",
        "x</think>junk<answer>1</answer>",
    ],
)
def test_format_check_rejects(text: str) -> None:
    with pytest.raises(ParseError):
        parsing.split_response(text)


def test_the_last_answer_block_counts() -> None:
    text = r1("first</answer> more <answer>second")
    assert parsing.split_response(text).answer == "second"


def test_chat_responses_carry_their_own_think_tag() -> None:
    with pytest.raises(ParseError):
        parsing.split_response("x</think><answer>1</answer>", "chat")


def test_overlong_text_is_rejected_before_parsing() -> None:
    with pytest.raises(ParseError, match="longer"):
        parsing.split_response("a" * (parsing.MAX_TEXT + 1))


def test_fenced_blocks_and_aliases() -> None:
    answer = "```Python\ndef f(a):\n    return a\n```\n```input\n1\n```\n```PY\nx = 1\n```"
    assert parsing.fenced_blocks(answer) == [
        ("python", "def f(a):\n    return a"),
        ("input", "1"),
        ("python", "x = 1"),
    ]
    assert parsing.program_block(answer) == "x = 1"


def test_program_fallback_to_an_unlabeled_fence_with_a_def() -> None:
    assert parsing.program_block("```\ndef g(x):\n    return x\n```") == "def g(x):\n    return x"
    with pytest.raises(ParseError, match="python"):
        parsing.program_block("```\nx = 1\n```")


def test_solver_answers_and_their_fallbacks() -> None:
    assert parsing.solver_answer(TaskType.DEDUCTION, "```output\n[1, 2]\n```") == "[1, 2]"
    assert parsing.solver_answer(TaskType.DEDUCTION, "  [1, 2] ") == "[1, 2]"
    assert parsing.solver_answer(TaskType.ABDUCTION, "```input\n'a', 2\n```") == "'a', 2"
    assert parsing.solver_answer(TaskType.INDUCTION, "def f(x):\n    return x") == "def f(x):\n    return x"
    with pytest.raises(ParseError):
        parsing.solver_answer(TaskType.INDUCTION, "no code here")
    with pytest.raises(ParseError):
        parsing.solver_answer(TaskType.DEDUCTION, "```output\n\n```")
