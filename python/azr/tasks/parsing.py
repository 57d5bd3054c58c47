"""Reading model text: the format check, the answer, fenced blocks, and the
program normalizations of SPEC §2. Parsing model code here only builds an
AST; nothing the model wrote is ever executed in this process.

Fallbacks, in order, when the model strays from the requested form:

- fence languages match case-insensitively; ``py``/``python3`` count as ``python``;
- a program may also come from an unlabeled fence that holds a ``def``;
- a solver's deduction/abduction answer may be the bare answer text when it
  has no ``output``/``input`` fence; an induction answer may be a bare ``def``;
- the first function is renamed to ``f`` when it has another name (and ``f``
  is not already taken).
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
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


def parse_program(source: str) -> ast.Module:
    if len(source) > MAX_TEXT:
        raise ParseError("program too long")
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise ParseError(f"the program does not parse: {type(exc).__name__}: {exc}") from None


def function_defs(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def imports(tree: ast.Module) -> list[str]:
    """The program's import statements, as source lines."""
    return [ast.unparse(n) for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]


def rename_entry_to_f(source: str) -> str:
    """Rename the first top-level function to ``f`` everywhere (token-wise, so
    formatting and comments survive). Unchanged when a top-level ``f`` exists,
    wherever it stands (helpers are often written before it)."""
    tree = parse_program(source)
    top = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    if not top:
        raise ParseError("the program defines no function")
    if any(n.name == "f" for n in top):
        return source
    old = top[0].name
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {d.name for d in function_defs(tree)}
    if "f" in names:
        raise ParseError(f"the entry function is {old!r} and the name 'f' is already used")
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError) as exc:
        raise ParseError(f"the program does not tokenize: {exc}") from None
    renamed = [t._replace(string="f") if t.type == tokenize.NAME and t.string == old else t for t in tokens]
    return tokenize.untokenize(renamed)


def check_entry(tree: ast.Module, single_function: bool) -> None:
    """The proposal's shape: an entry ``f`` with at least one parameter, and
    (by default) no other function or class."""
    defs = function_defs(tree)
    entry = next(
        (n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == "f"),
        None,
    )
    if entry is None:
        raise ParseError("the program must define f")
    params = entry.args
    if not (params.posonlyargs or params.args or params.vararg or params.kwonlyargs or params.kwarg):
        raise ParseError("f must take at least one argument")
    if single_function and (len(defs) > 1 or any(isinstance(n, ast.ClassDef) for n in ast.walk(tree))):
        raise ParseError("the program must define exactly one function (helpers and classes are off)")


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
