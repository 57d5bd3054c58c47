"""`azr prompt`, `azr validate`, `azr grade` end to end: JSON lines, in order."""

from __future__ import annotations

import json
from pathlib import Path

from azr.cli import cli
from click.testing import CliRunner

from .jsonl import run_jsonl


def _jsonl(command: str, lines: list[str]) -> list[dict[str, object]]:
    return run_jsonl([command, "--timeout", "2"], lines)


def r1(answer: str) -> str:
    return f"hmm</think>\n<answer>\n{answer}\n</answer>"


def test_prompt_renders_every_pair(tmp_path: Path) -> None:
    runner = CliRunner()
    for task in ("deduction", "abduction", "induction"):
        for role in ("propose", "solve"):
            result = runner.invoke(cli, ["prompt", "--task", task, "--role", role])
            assert result.exit_code == 0, result.output
            assert result.output.rstrip().endswith("Assistant: <think>")
    refs = tmp_path / "refs.jsonl"
    refs.write_text(
        json.dumps({"program": "def f(q):\n    return q * 3", "input": "2", "output": "6"}) + "\n"
    )
    result = runner.invoke(
        cli, ["prompt", "--task", "deduction", "--role", "solve", "--references", str(refs)]
    )
    assert "return q * 3" in result.output and "```output\n6" not in result.output
    result = runner.invoke(cli, ["prompt", "--task", "deduction", "--role", "propose", "--template", "chat"])
    assert result.exit_code != 0 and "--tokenizer" in result.output


def test_validate_answers_in_order_with_the_schema() -> None:
    program = "def f(x):\n    return x * 2"
    induction = "\n".join(f"```input\n{i}\n```" for i in range(10)) + "\n```message\ndoubles\n```"
    lines = [
        json.dumps(
            {"id": 1, "task": "deduction", "response": r1(f"```python\n{program}\n```\n```input\n21\n```")}
        ),
        json.dumps({"id": 2, "task": "abduction", "response": "no format"}),
        "not json",
        json.dumps({"id": 4, "task": "induction", "response": r1(induction), "program": program}),
        json.dumps({"id": 5, "task": "nope", "response": "x"}),
    ]
    answers = _jsonl("validate", lines)
    keys = {
        "id",
        "valid",
        "format_ok",
        "reason",
        "program",
        "input",
        "output",
        "inputs",
        "outputs",
        "message",
    }
    assert all(set(a) == keys for a in answers)
    assert [a["id"] for a in answers] == [1, 2, None, 4, 5]
    assert answers[0]["valid"] and answers[0]["output"] == "42"
    assert not answers[1]["format_ok"]
    assert "invalid request" in str(answers[2]["reason"]) and "invalid request" in str(answers[4]["reason"])
    assert answers[3]["valid"] and answers[3]["outputs"] == [str(2 * i) for i in range(10)]


def test_grade_answers_in_order_with_the_schema() -> None:
    program = "def f(x):\n    return x * 2"
    lines = [
        json.dumps(
            {
                "id": "d",
                "task": "deduction",
                "program": program,
                "input": "3",
                "output": "6",
                "response": r1("```output\n6\n```"),
            }
        ),
        json.dumps(
            {
                "id": "a",
                "task": "abduction",
                "program": program,
                "input": "3",
                "output": "6",
                "response": r1("```input\n0) or (True\n```"),
            }
        ),
        json.dumps(
            {
                "id": "i",
                "task": "induction",
                "inputs": ["5", "6"],
                "outputs": ["10", "12"],
                "message": "doubles",
                "response": r1("```python\ndef f(y):\n    return y + y\n```"),
            }
        ),
        json.dumps({"id": "x", "task": "deduction", "response": "x"}),
    ]
    answers = _jsonl("grade", lines)
    assert all(set(a) == {"id", "format_ok", "correct", "reward", "answer", "reason"} for a in answers)
    assert [(a["id"], a["correct"], a["reward"]) for a in answers] == [
        ("d", True, 1.0),
        ("a", False, -0.5),
        ("i", True, 1.0),
        ("x", False, None),
    ]


def test_grade_answers_malformed_induction_requests() -> None:
    response = r1("```python\ndef f(y):\n    return y\n```")
    base = {"task": "induction", "message": "m", "response": response}
    lines = [
        json.dumps({**base, "id": "lengths", "inputs": ["1"], "outputs": ["1", "2"]}),
        json.dumps({**base, "id": "numbers", "inputs": [1], "outputs": [1]}),
        json.dumps({**base, "id": "empty", "inputs": [], "outputs": []}),
        json.dumps({**base, "id": "good", "inputs": ["1"], "outputs": ["1"]}),
    ]
    answers = _jsonl("grade", lines)
    assert [a["id"] for a in answers] == ["lengths", "numbers", "empty", "good"]
    assert all(str(a["reason"]).startswith("invalid request") for a in answers[:3])
    assert answers[3]["correct"] is True
