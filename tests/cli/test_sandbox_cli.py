"""`azr sandbox run` end to end: one JSON line per request, in order, malformed lines answered."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator

import pytest
from azr.cli import cli
from azr.cli.jsonl import serve
from azr.cli.sandbox import handle_request
from azr.sandbox import Sandbox
from click.testing import CliRunner

from .jsonl import run_jsonl


def _run(lines: list[str], *args: str) -> list[dict[str, object]]:
    return run_jsonl(["sandbox", "run", "--timeout", "1", *args], lines)


def test_requests_answered_in_order_with_the_schema() -> None:
    lines = [
        json.dumps({"id": i, "program": "def f(x):\n    return x * 2", "input": str(i)}) for i in range(20)
    ]
    lines.insert(
        5, json.dumps({"id": "loop", "program": "def f():\n    while True:\n        pass", "input": ""})
    )
    lines.insert(9, json.dumps({"id": "script", "code": "print('hi')"}))
    answers = _run(lines)
    assert [a["id"] for a in answers] == [json.loads(line)["id"] for line in lines]
    for a in answers:
        assert set(a) == {"id", "ok", "output", "error", "stdout", "elapsed_ms"}
    by_id = {a["id"]: a for a in answers}
    assert by_id[7]["output"] == "14"
    assert by_id["loop"]["error"]["kind"] == "timeout"
    assert by_id["script"]["stdout"] == "hi\n" and by_id["script"]["ok"]


def test_malformed_lines_get_invalid_request_and_the_stream_goes_on() -> None:
    lines = [
        "{not json",
        "[1, 2]",
        json.dumps({"id": 1}),
        json.dumps({"id": 2, "program": 5, "input": ""}),
        json.dumps({"id": 3, "program": "def f():\n    return 3", "input": ""}),
    ]
    answers = _run(lines)
    assert [a["error"]["kind"] if a["error"] else None for a in answers] == ["invalid_request"] * 4 + [None]
    assert answers[2]["id"] == 1 and answers[4]["output"] == "3"


def test_validate_flag_applies_proposal_checks() -> None:
    lines = [
        json.dumps({"id": "ok", "program": "def f(x):\n    return sorted(x)", "input": "[3, 1]"}),
        json.dumps({"id": "rand", "program": "import os\ndef f():\n    return os.urandom(3)", "input": ""}),
        json.dumps({"id": "code", "code": "print(1)"}),
    ]
    answers = {a["id"]: a for a in _run(lines, "--validate")}
    assert answers["ok"]["output"] == "[1, 3]"
    assert answers["rand"]["error"]["kind"] == "nondeterministic"
    assert answers["code"]["error"]["kind"] == "invalid_request"


def test_serve_streams_interactively(sandbox: Sandbox) -> None:
    source = io.StringIO(json.dumps({"id": 1, "code": "print(1)"}) + "\n\n")
    sink = io.StringIO()
    assert serve(lambda line: handle_request(sandbox, line, False), source, sink, parallel=2) == 1
    assert json.loads(sink.getvalue())["stdout"] == "1\n"


def test_demo_runs() -> None:
    result = CliRunner().invoke(cli, ["sandbox", "demo", "--timeout", "1"])
    assert result.exit_code == 0, result.output
    assert "nondeterministic" in result.output and "proposals/s" in result.output


def test_demo_with_limits_too_tight_for_its_benchmark_says_so() -> None:
    result = CliRunner().invoke(cli, ["sandbox", "demo", "--timeout", "0.0001"])
    assert result.exit_code == 1 and not isinstance(result.exception, AssertionError)
    assert (
        "400 of 400 benchmark proposals failed (timeout" in result.output
        and "raise --timeout" in result.output
    )


def test_text_that_is_not_unicode_is_an_invalid_request_and_the_stream_goes_on() -> None:
    stdin = (
        b'{"id": 1, "code": "print(1) # \xff"}\n'  # a byte that is not UTF-8
        b'{"id": 2, "program": "def f(x):\\n    return x", "input": "\\ud800"}\n'  # an escaped lone surrogate
        b'{"id": 3, "code": "print(3)"}\n'
    )
    proc = subprocess.run(
        [sys.executable, "-m", "azr", "sandbox", "run", "--timeout", "1"],
        input=stdin,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    answers = [json.loads(line) for line in proc.stdout.splitlines()]
    kinds = [a["error"]["kind"] if a["error"] else None for a in answers]
    assert kinds == ["invalid_request", "invalid_request", None]
    assert answers[2]["id"] == 3 and answers[2]["stdout"] == "3\n"


def test_deeply_nested_requests_are_answered() -> None:
    deep = '{"id": 1, "code": "print(1)", "extra": ' + "[" * 900 + "]" * 900 + "}"
    answers = _run([deep, json.dumps({"id": 2, "code": "print(2)"})])
    assert [a["id"] for a in answers] == [1, 2] and answers[0]["stdout"] == "1\n"


def test_requests_nested_past_any_recursion_limit_are_invalid_and_the_stream_goes_on() -> None:
    for depth in (990, 100_000):
        deep = '{"id": ' + "[" * depth + "]" * depth + ', "code": "print(1)"}'
        answers = _run([deep, json.dumps({"id": 2, "code": "print(2)"})])
        assert [a["id"] for a in answers] == [None, 2], depth
        assert answers[0]["error"]["kind"] == "invalid_request" and answers[1]["stdout"] == "2\n"


def test_answers_are_strict_json_whatever_the_id() -> None:
    lines = ['{"id": NaN, "code": "print(1)"}', '{"id": 1e400, "code": "print(1)"}', '{"id": -Infinity}']
    lines.append(json.dumps({"id": 4, "code": "print(4)"}))
    proc = subprocess.run(
        [sys.executable, "-m", "azr", "sandbox", "run", "--timeout", "1"],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in an answer")

    answers = [json.loads(line, parse_constant=refuse) for line in proc.stdout.splitlines()]
    assert [a["error"]["kind"] if a["error"] else None for a in answers] == ["invalid_request"] * 3 + [None]
    assert answers[3]["id"] == 4


def test_bytes_that_are_not_utf8_are_answered_under_a_strict_locale() -> None:
    import os

    stdin = b'{"id": 1, "code": "print(1)"}\n{"id": 2, "code": "# \xff"}\n{"id": 3, "code": "print(3)"}\n'
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict", "LC_ALL": "C", "PYTHONUTF8": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "azr", "sandbox", "run", "--timeout", "1"],
        input=stdin,
        capture_output=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    answers = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [a["id"] for a in answers] == [1, None, 3]
    assert answers[1]["error"]["kind"] == "invalid_request"


def test_serve_runs_only_as_many_requests_at_once_as_asked() -> None:
    import threading
    import time

    lock, running, most = threading.Lock(), [0], [0]

    def handle(line: str) -> dict[str, object]:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return {"id": json.loads(line)["id"]}

    source = io.StringIO("".join(json.dumps({"id": i}) + "\n" for i in range(30)))
    sink = io.StringIO()
    assert serve(handle, source, sink, parallel=2) == 30
    assert most[0] == 2
    assert [json.loads(line)["id"] for line in sink.getvalue().splitlines()] == list(range(30))


def test_a_stream_that_fails_to_read_is_an_error_after_the_answers_so_far() -> None:
    import click
    import pytest

    def lines() -> Iterator[str]:
        yield json.dumps({"id": 1}) + "\n"
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")

    sink = io.StringIO()
    with pytest.raises(click.ClickException, match="reading requests stopped after 1 answers"):
        serve(lambda line: {"id": json.loads(line)["id"]}, lines(), sink, parallel=1)  # type: ignore[arg-type]
    assert sink.getvalue() == '{"id": 1}\n'


def test_limits_out_of_range_are_usage_errors() -> None:
    for args in (["--timeout", "0"], ["--memory-mb", "0"], ["--workers", "-1"]):
        result = CliRunner().invoke(cli, ["sandbox", "run", *args], input="")
        assert result.exit_code == 2 and "Invalid value" in result.output, args


@pytest.mark.parametrize("command", [["sandbox", "run"], ["validate"], ["grade"]])
def test_ctrl_c_ends_a_session_cleanly(command: list[str]) -> None:
    """Ctrl-C while the reader waits on stdin (a pipe from another process that
    stays open): click's "Aborted!" and exit 1, not an interpreter aborting at
    shutdown on the reader thread's lock of stdin (SIGABRT)."""
    import signal

    feeder = subprocess.Popen(["bash", "-c", "echo not-json; exec sleep 60"], stdout=subprocess.PIPE)
    proc = subprocess.Popen(
        [sys.executable, "-m", "azr", *command, "--workers", "1"],
        stdin=feeder.stdout,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert "invalid" in proc.stdout.readline()  # serving: it answered the first line
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        for child in (proc, feeder):
            child.kill()
            child.wait()
        for pipe in (feeder.stdout, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    assert proc.returncode == 1, err
    assert "Aborted!" in err and "Fatal Python error" not in err
