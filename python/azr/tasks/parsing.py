"""Reading model text: the format check, the answer and fenced blocks of
SPEC §2. Model code is not parsed here: the sandbox's Python parses it
(``Sandbox.shape_batch``), since this process may run an older Python than
the programs run on.

Fallbacks, in order, when the model strays from the requested form:

- fence languages match case-insensitively; ``py``/``python3`` count as ``python``;
- a program may also come from an unlabeled fence that holds a ``def``;
- a solver's deduction/abduction answer may be the bare answer text when it
  has no ``output``/``input`` fence; an induction answer may be a bare ``def``;
- the first function is renamed to ``f`` when it has another name (and ``f``
  is not already taken), by the sandbox (``Sandbox.shape_batch``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from azr.tasks.types import TaskType

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
#: Model text longer than this is rejected before any parsing.
MAX_TEXT = 200_000

_FORMAT = re.compile(r"\s*<think>(?P<think>.*?)</think>\s*<answer>.*</answer>\s*", re.DOTALL)
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)```", re.DOTALL)
_LANG_ALIASES = {"py": "python", "python3": "python", "": ""}


class ParseError(ValueError):
    """Model text that does not have the requested form; the message says why."""


@dataclass(frozen=True)
class Response:
    think: str
    answer: str


def split_response(text: str, template: str = "r1") -> Response:
    """Check the format and return the reasoning and the last answer block.

    With the ``r1`` template the prompt ends with ``<think>``, so the model's
    text starts inside the reasoning; the opening tag is restored first.
    """
    if len(text) > MAX_TEXT:
        raise ParseError(f"response longer than {MAX_TEXT} characters")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate, which no sandbox call accepts
            raise ParseError("the response is not valid Unicode text") from None
    full = THINK_OPEN + text if template == "r1" and not text.lstrip().startswith(THINK_OPEN) else text
    match = _FORMAT.fullmatch(full)
    if match is None:
        raise ParseError("the response is not <think>…</think> followed by <answer>…</answer>")
    start = full.rindex(ANSWER_OPEN) + len(ANSWER_OPEN)
    end = full.rindex(ANSWER_CLOSE)
    if end < start:
        raise ParseError("the last <answer> block is not closed")
    return Response(think=match.group("think"), answer=full[start:end])


def fenced_blocks(answer: str) -> list[tuple[str, str]]:
    """Every fenced block as (language, body), language lower-cased and aliased."""
    blocks = []
    for lang, body in _FENCE.findall(answer):
        lang = lang.lower()
        blocks.append((_LANG_ALIASES.get(lang, lang), body.strip("\n")))
    return blocks


def blocks_of(answer: str, language: str) -> list[str]:
    return [body for lang, body in fenced_blocks(answer) if lang == language]


def program_block(answer: str) -> str:
    """The program: the last ``python`` fence, else the last unlabeled fence with a ``def``."""
    python = blocks_of(answer, "python")
    if python:
        return python[-1]
    plain = [body for lang, body in fenced_blocks(answer) if lang == "" and "def " in body]
    if plain:
        return plain[-1]
    raise ParseError("no ```python block with the program")


def solver_answer(task: TaskType, answer: str) -> str:
    """The part of a solver's answer that gets checked."""
    if task is TaskType.INDUCTION:
        try:
            return program_block(answer)
        except ParseError:
            if "def " in answer:
                return answer.strip()
            raise
    fence = "output" if task is TaskType.DEDUCTION else "input"
    found = blocks_of(answer, fence)
    text = found[-1] if found else answer
    text = text.strip()
    if not text:
        raise ParseError(f"the answer has no {fence}")
    return text
