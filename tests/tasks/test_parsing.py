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


def test_first_function_is_renamed_to_f_keeping_formatting() -> None:
    source = "def solve(x):  # entry\n    return solve2(x) if x else 0\n\ndef solve2(y):\n    return solve(y - 1)\n"
    renamed = parsing.rename_entry_to_f(source)
    assert renamed.startswith("def f(x):  # entry")
    assert "return f(y - 1)" in renamed and "solve2" in renamed
    assert parsing.rename_entry_to_f("def f(a):\n    return a") == "def f(a):\n    return a"


def test_helpers_before_f_leave_f_the_entry() -> None:
    helper_first = "def helper(a):\n    return 2 * a\n\ndef f(a):\n    return helper(a) + 1\n"
    assert parsing.rename_entry_to_f(helper_first) == helper_first
    parsing.check_entry(parsing.parse_program(helper_first), single_function=False)
    with pytest.raises(ParseError, match="exactly one function"):
        parsing.check_entry(parsing.parse_program(helper_first), single_function=True)


def test_renaming_refuses_when_f_is_taken() -> None:
    with pytest.raises(ParseError, match="already used"):
        parsing.rename_entry_to_f("def g(a):\n    f = 2\n    return a + f")


def test_entry_rules() -> None:
    tree = parsing.parse_program
    parsing.check_entry(tree("import math\ndef f(a):\n    return math.sqrt(a)"), single_function=True)
    with pytest.raises(ParseError, match="at least one argument"):
        parsing.check_entry(tree("def f():\n    return 1"), single_function=True)
    with pytest.raises(ParseError, match="exactly one function"):
        parsing.check_entry(tree("def f(a):\n    def g(b):\n        return b\n    return g(a)"), True)
    with pytest.raises(ParseError, match="exactly one function"):
        parsing.check_entry(tree("class A:\n    pass\ndef f(a):\n    return a"), True)
    parsing.check_entry(tree("def f(a):\n    def g(b):\n        return b\n    return g(a)"), False)
    with pytest.raises(ParseError, match="must define f"):
        parsing.check_entry(tree("x = 1"), True)


def test_imports_are_collected() -> None:
    tree = parsing.parse_program("import math\nfrom collections import Counter as C\ndef f(a):\n    return a")
    assert parsing.imports(tree) == ["import math", "from collections import Counter as C"]


def test_syntax_errors_and_null_bytes_are_parse_errors() -> None:
    for bad in ["def f(:\n", "def f(a):\n    return a\x00", "(" * 300 + "1" + ")" * 300]:
        with pytest.raises(ParseError):
            parsing.parse_program(bad)


def test_solver_answers_and_their_fallbacks() -> None:
    assert parsing.solver_answer(TaskType.DEDUCTION, "```output\n[1, 2]\n```") == "[1, 2]"
    assert parsing.solver_answer(TaskType.DEDUCTION, "  [1, 2] ") == "[1, 2]"
    assert parsing.solver_answer(TaskType.ABDUCTION, "```input\n'a', 2\n```") == "'a', 2"
    assert parsing.solver_answer(TaskType.INDUCTION, "def f(x):\n    return x") == "def f(x):\n    return x"
    with pytest.raises(ParseError):
        parsing.solver_answer(TaskType.INDUCTION, "no code here")
    with pytest.raises(ParseError):
        parsing.solver_answer(TaskType.DEDUCTION, "```output\n\n```")
