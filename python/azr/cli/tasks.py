"""``azr prompt``, ``azr validate``, ``azr grade``: the task rules from the shell,
so prompts and graders can be debugged without training."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from azr._core import ConfigError
from azr.cli.jsonl import parse_request, serve, stdin_lines
from azr.cli.sandbox import limits, make_sandbox, parallel
from azr.sandbox import Sandbox
from azr.tasks import prompts
from azr.tasks.types import ZERO_TRIPLET, InductionTask, Role, TaskType, Triplet
from azr.tasks.validation import Graded, Rules, grade, parse_proposal, validate_proposals

TASKS = click.Choice([t.value for t in TaskType])
TEMPLATES = click.Choice(list(prompts.TEMPLATES))

#: Shown to the induction solver when no task file is given.
EXAMPLE_INDUCTION = InductionTask(
    program=ZERO_TRIPLET.program,
    inputs=("'a'", "1", "[2, 3]", "None", "(4,)", "'Hello'", "{'k': 1}", "2.5", "True", "b'x'"),
    outputs=("'a'", "1", "[2, 3]", "None", "(4,)", "'Hello'", "{'k': 1}", "2.5", "True", "b'x'"),
    message="It gives back exactly what it is given.",
)


def _read_records(path: Path | None) -> list[dict[str, Any]]:
    if path is None:
        return []
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"{path}: {exc}") from exc


def _load_tokenizer(name: str | None) -> prompts.ChatTokenizer:
    if name is None:
        raise click.ClickException("--template chat needs --tokenizer (a local folder or a hub id)")
    from azr.models import load_tokenizer

    try:
        tokenizer: prompts.ChatTokenizer = load_tokenizer(name, "--tokenizer", chat=True)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    return tokenizer


@click.command("prompt")
@click.option("--task", "task_name", type=TASKS, required=True)
@click.option("--role", "role_name", type=click.Choice([r.value for r in Role]), required=True)
@click.option("--template", type=TEMPLATES, default="r1", show_default=True)
@click.option(
    "--references",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="JSON lines of tasks: references for proposers, the task itself (first line) for solvers "
    "and the induction proposer. Defaults to the zero triplet.",
)
@click.option("--tokenizer", help="Tokenizer whose chat template --template chat uses.")
def prompt_command(
    task_name: str, role_name: str, template: str, references: Path | None, tokenizer: str | None
) -> None:
    """Print the rendered prompt of one (task, role) pair."""
    task, role = TaskType(task_name), Role(role_name)
    records = _read_records(references)
    try:
        triplets = [Triplet.from_record(r) for r in records if "input" in r] or [ZERO_TRIPLET]
        induction = next((InductionTask.from_record(r) for r in records if "inputs" in r), EXAMPLE_INDUCTION)
    except (KeyError, TypeError, ValueError) as exc:
        raise click.ClickException(f"{references}: a record lacks a field: {exc}") from exc
    text = prompts.instruction(
        task,
        role,
        references=triplets,
        triplet=triplets[0],
        program=triplets[0].program,
        induction=induction,
    )
    tok = _load_tokenizer(tokenizer) if template == "chat" else None
    click.echo(prompts.render(text, template, tok))


def _rules_options(f: Any) -> Any:
    f = click.option(
        "--template",
        type=TEMPLATES,
        default="r1",
        show_default=True,
        help="Template the responses were generated with.",
    )(f)
    f = click.option(
        "--allow-helpers", is_flag=True, help="Let proposals define more than one function and classes."
    )(f)
    return f


def validate_request(sb: Sandbox, rules: Rules, line: str) -> dict[str, Any]:
    """One `azr validate` request to its answer; never raises."""
    fields = ("valid", "format_ok", "reason", "program", "input", "output", "inputs", "outputs", "message")
    answer: dict[str, Any] = dict.fromkeys(fields)
    request, problem = parse_request(line)
    answer["id"] = request.get("id") if request else None
    try:
        if request is None:
            raise ValueError(problem)
        task = TaskType(request.get("task"))
        response = request.get("response")
        program = request.get("program")
        if not isinstance(response, str) or (program is not None and not isinstance(program, str)):
            raise ValueError("`response` (and `program`, if given) must be strings")
    except ValueError as exc:
        return {**answer, "valid": False, "format_ok": False, "reason": f"invalid request: {exc}"}
    proposal = parse_proposal(task, response, rules, program)
    validate_proposals(sb, [proposal], rules)
    answer.update(
        valid=proposal.valid,
        format_ok=proposal.format_ok,
        reason=proposal.reason,
        program=proposal.program,
        input=proposal.input,
        output=proposal.output,
        inputs=proposal.inputs,
        outputs=proposal.outputs,
        message=proposal.message,
    )
    return {"id": answer.pop("id"), **answer}


def grade_request(sb: Sandbox, rules: Rules, line: str) -> dict[str, Any]:
    """One `azr grade` request to its answer; never raises."""
    request, problem = parse_request(line)
    request_id = request.get("id") if request else None
    try:
        if request is None:
            raise ValueError(problem)
        task = TaskType(request.get("task"))
        response = request["response"]
        if not isinstance(response, str):
            raise ValueError("`response` must be a string")
        if task is TaskType.INDUCTION:
            inputs, outputs = request["inputs"], request["outputs"]
            texts = (isinstance(v, list) and all(isinstance(x, str) for x in v) for v in (inputs, outputs))
            if not all(texts) or len(inputs) != len(outputs) or not inputs:
                raise ValueError("`inputs` and `outputs` must be non-empty lists of strings of one length")
            hidden = InductionTask(
                str(request.get("program", "")),
                tuple(inputs),
                tuple(outputs),
                str(request.get("message", "")),
                visible=0,
            )
            item = Graded(task, response, induction=hidden)
        else:
            triplet = Triplet(str(request["program"]), str(request.get("input", "")), str(request["output"]))
            item = Graded(task, response, triplet=triplet)
    except (KeyError, TypeError, ValueError) as exc:
        return {
            "id": request_id,
            "format_ok": False,
            "correct": False,
            "reward": None,
            "answer": None,
            "reason": f"invalid request: {exc}",
        }
    result = grade(sb, [item], rules)[0]
    return {
        "id": request_id,
        "format_ok": result.format_ok,
        "correct": result.correct,
        "reward": result.reward,
        "answer": result.answer,
        "reason": result.reason,
    }


@click.command("validate")
@limits
@_rules_options
def validate_command(
    timeout_s: float, memory_mb: int, workers: int, template: str, allow_helpers: bool
) -> None:
    """Validate proposer responses: JSON lines in, one answer each, in order.

    \b
    Request: {"id", "task", "response", "program"}   (program: induction only)
    Answer:  {"id", "valid", "format_ok", "reason", "program", "input", "output",
              "inputs", "outputs", "message"}
    """
    sb = make_sandbox(timeout_s, memory_mb, workers)
    rules = Rules(single_function=not allow_helpers, template=template)
    serve(lambda line: validate_request(sb, rules, line), stdin_lines(), sys.stdout, parallel(workers))


@click.command("grade")
@limits
@_rules_options
def grade_command(timeout_s: float, memory_mb: int, workers: int, template: str, allow_helpers: bool) -> None:
    """Grade solver responses: JSON lines in, one answer each, in order.

    \b
    Request: {"id", "task", "program", "input", "output", "inputs", "outputs", "message", "response"}
             (induction: inputs/outputs are the hidden pairs)
    Answer:  {"id", "format_ok", "correct", "reward", "answer", "reason"}
    """
    sb = make_sandbox(timeout_s, memory_mb, workers)
    rules = Rules(single_function=not allow_helpers, template=template)
    serve(lambda line: grade_request(sb, rules, line), stdin_lines(), sys.stdout, parallel(workers))
