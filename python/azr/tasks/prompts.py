"""Prompts for the six (task, role) pairs, and the two templates that wrap them.

``r1`` wraps an instruction in a plain-text dialogue whose assistant turn opens
with ``<think>``, as the method uses for base models. ``chat`` hands the same
instruction to the tokenizer's chat template (instruct models); the model is
then asked to write the ``<think>`` and ``<answer>`` tags itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from azr.tasks.types import InductionTask, Role, TaskType, Triplet

TEMPLATES = ("r1", "chat")

R1_WRAPPER = (
    "This is a conversation between a User and an Assistant. The User poses a problem and the Assistant "
    "solves it. Before answering, the Assistant reasons step by step privately, then gives the final "
    "answer. The reasoning goes inside <think> </think> tags and the answer inside <answer> </answer> "
    "tags, like this: <think> reasoning </think> <answer> answer </answer>.\n"
    "User: {instruction}\n"
    "Assistant: <think>"
)

CHAT_FORMAT_NOTE = "\n\nFirst reason inside <think> </think> tags, then give the final answer inside <answer> </answer> tags."

_ONE_FUNCTION = "- `f` is the only function: no helper functions, nested functions or classes."
_HELPERS_ALLOWED = "- Helper functions and classes are allowed; `f` is the one called."

_PROGRAM_RULES = """Rules for the program:
- The entry function is named `f` and takes at least one argument.
{shape}
- It is deterministic: no randomness, no clock, no files, network or printing.
- Imports, if any, go at the top; the modules random, time, datetime, logging, threading, multiprocessing, subprocess, hashlib, hmac and calendar are not allowed.
- It finishes well within a few seconds and returns a plain Python value (numbers, strings, bytes, None, booleans, and lists, tuples, dicts and sets of them).
- The input is written as the arguments of a call: for `f(a, b)` write `[1, 2], 'x'`. Arguments are Python literals."""


class ChatTokenizer(Protocol):
    def apply_chat_template(self, conversation: list[dict[str, str]], **kwargs: Any) -> Any: ...


def _triplet_block(t: Triplet, show_output: bool = True) -> str:
    text = f"```python\n{t.program}\n```\n```input\n{t.input}\n```"
    return text + (f"\n```output\n{t.output}\n```" if show_output else "")


def _references(refs: Sequence[Triplet]) -> str:
    if not refs:
        return "(no reference tasks yet)"
    return "\n\n".join(f"### Reference {i + 1}\n{_triplet_block(t)}" for i, t in enumerate(refs))


def _program_rules(single_function: bool) -> str:
    return _PROGRAM_RULES.format(shape=_ONE_FUNCTION if single_function else _HELPERS_ALLOWED)


def _triplet_proposer(
    references: Sequence[Triplet], solver_task: str, difficulty: str, example: str, single_function: bool
) -> str:
    return f"""Design a new code-reasoning puzzle. You will write a Python function `f` and one input for it. {solver_task} Make the puzzle demanding: {difficulty}, yet the code must run.

{_program_rules(single_function)}

Here are earlier puzzles with their outputs. Make yours clearly different from all of them.

{_references(references)}

Put the function in a ```python block and the input in an ```input block inside your answer, for example:
<answer>
{example}
</answer>"""


def deduction_proposer(references: Sequence[Triplet], single_function: bool = True) -> str:
    return _triplet_proposer(
        references,
        "Another solver will see the function and the input and must work out the output by reasoning alone, without running anything.",
        "the output should take careful step-by-step tracing to predict",
        "```python\ndef f(nums, k):\n    ...\n```\n```input\n[3, 1, 4], 2\n```",
        single_function,
    )


def abduction_proposer(references: Sequence[Triplet], single_function: bool = True) -> str:
    return _triplet_proposer(
        references,
        "Another solver will see the function and the output it gives on your input, and must find an input that produces that output.",
        "recovering an input should require real insight into the code",
        "```python\ndef f(text):\n    ...\n```\n```input\n'some text'\n```",
        single_function,
    )


def induction_proposer(program: str, n_inputs: int = 10) -> str:
    return f"""Here is a Python function:

```python
{program}
```

Write {n_inputs} different inputs for `f` that together reveal what it does, covering ordinary and edge cases, plus a short message describing the function's behaviour in words. A solver will see some inputs with their outputs and your message, and must rewrite the function; the message should help without giving the code away (never copy code into it).

Inputs are written as the arguments of a call: for `f(a, b)` write `[1, 2], 'x'`, using Python literals only.

Put each input in its own ```input block and the message in a ```message block inside your answer, for example:
<answer>
```input
[1, 2], 'x'
```
... ({n_inputs} input blocks in all) ...
```message
Describe the behaviour here.
```
</answer>"""


def deduction_solver(triplet: Triplet) -> str:
    return f"""Work out what this Python function returns for the given input. Do it by reasoning about the code; you cannot run it.

{_triplet_block(triplet, show_output=False)}

Give the returned value as a Python literal, exactly as `repr` would print it, in an ```output block inside your answer, for example:
<answer>
```output
[1, 'a']
```
</answer>"""


def abduction_solver(triplet: Triplet) -> str:
    return f"""Find an input for which this Python function returns the given output. Any input that produces it is correct.

```python
{triplet.program}
```
```output
{triplet.output}
```

Write the input as the arguments of a call to `f` (for `f(a, b)` write `[1, 2], 'x'`), using Python literals only, in an ```input block inside your answer, for example:
<answer>
```input
[1, 2], 'x'
```
</answer>"""


def induction_solver(task: InductionTask) -> str:
    examples = "\n\n".join(f"```input\n{i}\n```\n```output\n{o}\n```" for i, o in task.visible_pairs)
    return f"""Reconstruct a hidden Python function `f` from examples of its behaviour and a description.

Description: {task.message}

Examples (each input is the argument list of a call to `f`, each output what it returned):

{examples}

Write a function `f` that behaves the same way on these and on other inputs, in a ```python block inside your answer, for example:
<answer>
```python
def f(x):
    ...
```
</answer>"""


def instruction(
    task: TaskType,
    role: Role,
    *,
    references: Sequence[Triplet] = (),
    triplet: Triplet | None = None,
    program: str | None = None,
    induction: InductionTask | None = None,
    n_inputs: int = 10,
    single_function: bool = True,
) -> str:
    """The user instruction for one (task, role) pair. ``single_function``
    states the one-function rule of ``selfplay.single_function`` in the
    deduction and abduction proposer prompts."""
    if role is Role.PROPOSE:
        if task is TaskType.DEDUCTION:
            return deduction_proposer(references, single_function)
        if task is TaskType.ABDUCTION:
            return abduction_proposer(references, single_function)
        if program is None:
            raise ValueError("the induction proposer needs the program")
        return induction_proposer(program, n_inputs)
    if task is TaskType.INDUCTION:
        if induction is None:
            raise ValueError("the induction solver needs the induction task")
        return induction_solver(induction)
    if triplet is None:
        raise ValueError(f"the {task.value} solver needs the triplet")
    return deduction_solver(triplet) if task is TaskType.DEDUCTION else abduction_solver(triplet)


def render(text: str, template: str = "r1", tokenizer: ChatTokenizer | None = None) -> str:
    """Wrap an instruction in a template."""
    if template == "r1":
        return R1_WRAPPER.format(instruction=text)
    if template == "chat":
        if tokenizer is None:
            raise ValueError("the chat template needs a tokenizer")
        rendered = tokenizer.apply_chat_template(
            [{"role": "user", "content": text + CHAT_FORMAT_NOTE}], tokenize=False, add_generation_prompt=True
        )
        return str(rendered)
    raise ValueError(f"unknown template {template!r}; expected one of {TEMPLATES}")
