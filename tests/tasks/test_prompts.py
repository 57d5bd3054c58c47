"""Prompts: every (task, role) pair renders with both templates and says what to produce."""

from __future__ import annotations

from typing import Any

import pytest
from azr.tasks import prompts
from azr.tasks.types import ZERO_TRIPLET, InductionTask, Role, TaskType, Triplet

INDUCTION = InductionTask(
    "def f(x):\n    return -x", tuple(map(str, range(10))), tuple(str(-i) for i in range(10)), "negates"
)


class StandInTokenizer:
    """What `apply_chat_template` does for a ChatML tokenizer, without downloading one."""

    def apply_chat_template(self, conversation: list[dict[str, str]], **kwargs: Any) -> str:
        assert kwargs == {"tokenize": False, "add_generation_prompt": True}
        return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in conversation) + (
            "<|im_start|>assistant\n"
        )


@pytest.mark.parametrize("task", list(TaskType))
@pytest.mark.parametrize("role", list(Role))
def test_every_pair_renders_with_both_templates(task: TaskType, role: Role) -> None:
    text = prompts.instruction(
        task,
        role,
        references=[ZERO_TRIPLET],
        triplet=ZERO_TRIPLET,
        program=ZERO_TRIPLET.program,
        induction=INDUCTION,
    )
    r1 = prompts.render(text, "r1")
    assert r1.endswith("Assistant: <think>") and text in r1
    chat = prompts.render(text, "chat", StandInTokenizer())
    assert (
        chat.startswith("<|im_start|>user\n" + text) and "<answer>" in chat and chat.endswith("assistant\n")
    )


def test_what_each_prompt_shows_and_hides() -> None:
    t = Triplet("def f(s):\n    return s * 2", "'ab'", "'abab'")
    assert "'abab'" not in prompts.deduction_solver(t) and "'ab'" in prompts.deduction_solver(t)
    assert "'abab'" in prompts.abduction_solver(t) and "```input\n'ab'" not in prompts.abduction_solver(t)
    solver = prompts.induction_solver(INDUCTION)
    assert "return -x" not in solver and "negates" in solver
    assert "```input\n4\n```" in solver and "```input\n5\n```" not in solver  # only the 5 visible pairs
    proposer = prompts.deduction_proposer([t, ZERO_TRIPLET])
    assert "Reference 2" in proposer and "'abab'" in proposer
    assert "10 different inputs" in prompts.induction_proposer(t.program)


def test_proposer_prompts_state_the_one_function_rule_when_it_is_on() -> None:
    for task in (TaskType.DEDUCTION, TaskType.ABDUCTION):
        strict = prompts.instruction(task, Role.PROPOSE, references=[ZERO_TRIPLET])
        loose = prompts.instruction(task, Role.PROPOSE, references=[ZERO_TRIPLET], single_function=False)
        assert "`f` is the only function" in strict and "Helper functions" not in strict
        assert "Helper functions and classes are allowed" in loose and "only function" not in loose


def test_missing_pieces_and_unknown_templates_raise() -> None:
    with pytest.raises(ValueError):
        prompts.instruction(TaskType.DEDUCTION, Role.SOLVE)
    with pytest.raises(ValueError):
        prompts.instruction(TaskType.INDUCTION, Role.PROPOSE)
    with pytest.raises(ValueError):
        prompts.render("x", "chat")
    with pytest.raises(ValueError):
        prompts.render("x", "alpaca")
