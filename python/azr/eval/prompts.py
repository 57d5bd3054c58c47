"""Evaluation prompts (SPEC §7) and reading answers back out of responses.

Code and CruxEval questions use the training template (``r1`` for base
models, ``chat`` for instruct models); math uses ``qwen-boxed`` for base models,
as the paper does, or any of the others. CruxEval prompts are the solver
prompts of self-play, so in-distribution scores measure exactly what the
model was trained on.
"""

from __future__ import annotations

import ast
from typing import Any

from azr.eval.data import Sample
from azr.tasks import prompts as task_prompts
from azr.tasks.parsing import ParseError, program_block, solver_answer, split_response
from azr.tasks.types import TaskType, Triplet

TEMPLATES = ("r1", "chat", "qwen-boxed")

QWEN_BOXED = (
    "<|im_start|>system\nPlease reason step by step, and put your final answer within "
    "\\boxed{{}}.<|im_end|>\n"
    "<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
)


def _code_instruction(s: Sample) -> str:
    g = s.gold
    if g.get("style") == "stdin":
        return (
            "Solve this programming problem in Python. The program reads its input from standard input and "
            f"writes the answer to standard output.\n\n{s.question}\n\n"
            "Give the complete program in a ```python block inside your answer."
        )
    if g.get("style") == "functional":
        return (
            f"Solve this programming problem in Python.\n\n{s.question}\n\nComplete this starter code:\n"
            f"```python\n{g['starter_code']}\n```\n\n"
            "Give the complete class, with any imports it needs, in a ```python block inside your answer."
        )
    return (
        "Write a Python function that solves the task below.\n\n"
        f"```python\n{s.question.strip()}\n```\n\n"
        "Give the complete function, with any imports it needs, in a ```python block inside your answer."
    )


def instruction(s: Sample) -> str:
    """The question, worded for the model (before any template)."""
    if s.kind == "math":
        return f"{s.question}\nPut your final answer within \\boxed{{}}."
    if s.kind == "cruxeval_o":
        return task_prompts.deduction_solver(Triplet(s.gold["program"], s.gold["input"], s.gold["output"]))
    if s.kind == "cruxeval_i":
        return task_prompts.abduction_solver(Triplet(s.gold["program"], s.gold["input"], s.gold["output"]))
    return _code_instruction(s)


#: End-of-turn tokens of the common chat formats (Qwen's ChatML, Llama 3). A
#: base model prompted in one of them writes its turn's end and would then go
#: on with an invented next turn (a second ``\\boxed{}``, text after
#: ``</answer>``); generation stops there, as the official Qwen math harness does.
END_OF_TURN = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>")


def stop_token_ids(tokenizer: Any) -> tuple[int, ...]:
    """The ids of the ``END_OF_TURN`` tokens this tokenizer has as single tokens."""
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    return tuple(vocab[t] for t in END_OF_TURN if t in vocab)


def render(s: Sample, template: str, tokenizer: task_prompts.ChatTokenizer | None = None) -> str:
    if template == "qwen-boxed":
        return QWEN_BOXED.format(question=s.question if s.kind == "math" else instruction(s))
    return task_prompts.render(instruction(s), template, tokenizer)


def answer_text(text: str, template: str) -> tuple[str, bool]:
    """The answer part of a response and whether the response kept the requested format.

    With ``r1``/``chat`` the answer is the last ``<answer>`` block; a response
    that strays from the format is still graded on what follows its last
    ``</think>`` (or on all of it), and marked as off-format.
    """
    if template == "qwen-boxed":
        return text, True
    try:
        return split_response(text, template).answer, True
    except ParseError:
        tail = text.rsplit("</think>", 1)[-1]
        return tail, False


def _python_or_none(text: str) -> str | None:
    try:
        ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # any model text: never a crash
        return None
    return text if text.strip() else None


def extract(s: Sample, text: str, template: str) -> tuple[str | None, bool]:
    """What gets graded (code, an answer literal or a math answer; None if absent) and the format flag."""
    answer, formatted = answer_text(text, template)
    if s.kind == "math":
        return (answer if answer.strip() else None), formatted
    if s.kind in ("cruxeval_o", "cruxeval_i"):
        try:
            task = TaskType.DEDUCTION if s.kind == "cruxeval_o" else TaskType.ABDUCTION
            return solver_answer(task, answer), formatted
        except ParseError:
            return None, formatted
    try:
        return program_block(answer), formatted
    except ParseError:
        return _python_or_none(answer), formatted
