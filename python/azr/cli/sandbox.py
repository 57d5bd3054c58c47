"""``azr sandbox``: run and validate programs from the shell."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from azr._core import ConfigError
from azr.cli.jsonl import parse_request, serve, stdin_lines
from azr.sandbox import ExecResult, Sandbox, SandboxError


def limits(f: Any) -> Any:
    f = click.option(
        "--timeout",
        "timeout_s",
        type=click.FloatRange(min=0, min_open=True),
        default=10.0,
        show_default=True,
        help="CPU seconds per execution (guest fuel).",
    )(f)
    f = click.option(
        "--memory-mb",
        type=click.IntRange(min=1),
        default=256,
        show_default=True,
        help="Memory limit per execution.",
    )(f)
    f = click.option(
        "--workers",
        type=click.IntRange(min=0, max=128),
        default=0,
        show_default=True,
        help="Parallel executions; 0 means one per core (at most 128).",
    )(f)
    return f


def make_sandbox(timeout_s: float, memory_mb: int, workers: int) -> Sandbox:
    try:
        return Sandbox(timeout_s=timeout_s, memory_mb=memory_mb, workers=workers)
    except (SandboxError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def sandbox() -> None:
    """Run untrusted Python in the WebAssembly sandbox."""


def _invalid(request_id: Any, message: str) -> dict[str, Any]:
    return {
        "id": request_id,
        "ok": False,
        "output": None,
        "error": {"kind": "invalid_request", "message": message},
        "stdout": "",
        "elapsed_ms": 0.0,
    }


def handle_request(sb: Sandbox, line: str, validate: bool) -> dict[str, Any]:
    """One JSON request line to one response dict; never raises."""
    request, problem = parse_request(line)
    if request is None:
        return _invalid(None, problem or "")
    request_id = request.get("id")
    program, code, arg = request.get("program"), request.get("code"), request.get("input", "")
    result: ExecResult
    if program is not None and code is None:
        if not isinstance(program, str) or not isinstance(arg, str):
            return _invalid(request_id, "`program` and `input` must be strings")
        result = sb.validate(program, arg) if validate else sb.run(program, arg)
    elif code is not None and program is None:
        if not isinstance(code, str):
            return _invalid(request_id, "`code` must be a string")
        if validate:
            return _invalid(request_id, "--validate needs `program` and `input`, not `code`")
        result = sb.run_script(code)
    else:
        return _invalid(request_id, "a request needs either `program` (with `input`) or `code`")
    return {"id": request_id, **result.to_dict()}


@sandbox.command("run")
@limits
@click.option(
    "--validate",
    is_flag=True,
    help="Apply every proposal check: banned modules, literal inputs, determinism, plain output.",
)
def run_command(timeout_s: float, memory_mb: int, workers: int, validate: bool) -> None:
    """Answer JSON-lines requests from stdin, one JSON line each, in order.

    \b
    Request:  {"id": any, "program": str, "input": str}   evaluates f(<input>)
              {"id": any, "code": str}                    runs a script
    Response: {"id", "ok", "output", "error": {"kind", "message"} | null, "stdout", "elapsed_ms"}
    """
    sb = make_sandbox(timeout_s, memory_mb, workers)
    serve(lambda line: handle_request(sb, line, validate), stdin_lines(), sys.stdout, parallel(workers))


def _cores() -> int:
    return os.cpu_count() or 1


def parallel(workers: int) -> int:
    """Requests handled at once: one per sandbox worker."""
    return workers or min(_cores(), 128)


DEMO = [
    ("a proposal", "def f(words):\n    return sorted(set(words), key=len)", "['pear', 'fig', 'fig', 'kiwi']"),
    ("infinite loop", "def f():\n    while True:\n        pass", ""),
    ("7 ** 10 ** 7", "def f():\n    return 7 ** 10 ** 7", ""),
    ("memory bomb", "def f():\n    return 'x' * 10 ** 10", ""),
    ("reads a host file", "def f():\n    return open('/etc/passwd').read()", ""),
    ("os.urandom", "import os\ndef f():\n    return os.urandom(4)", ""),
    ("set order", "def f(n):\n    return list({str(i) for i in range(n)})", "30"),
    ("banned import", "import random\ndef f():\n    return 1", ""),
    ("custom object", "class A:\n    pass\ndef f():\n    return A()", ""),
]


@sandbox.command("demo")
@limits
def demo_command(timeout_s: float, memory_mb: int, workers: int) -> None:
    """Validate a few good and hostile programs, then measure throughput."""
    console = Console()
    start = time.perf_counter()
    sb = make_sandbox(min(timeout_s, 2.0), memory_mb, workers)
    console.print(f"[bold]azr sandbox[/] ready in {time.perf_counter() - start:.2f} s: {sb!r}")
    table = Table("program", "verdict", "output / reason", "ms")
    results = sb.validate_batch([(program, arg) for _, program, arg in DEMO])
    for (name, _, _), result in zip(DEMO, results, strict=True):
        if result.error is None:
            table.add_row(name, "[green]valid[/]", result.output, f"{result.elapsed_ms:.1f}")
        else:
            reason = (
                result.error.message if len(result.error.message) < 70 else result.error.message[:67] + "..."
            )
            table.add_row(name, f"[red]{result.error.kind}[/]", reason, f"{result.elapsed_ms:.1f}")
    console.print(table)
    jobs = [
        (f"def f(n):\n    return sum(i * i for i in range(n)) % {k + 7}", str(100 + k)) for k in range(400)
    ]
    t = time.perf_counter()
    done = sb.validate_batch(jobs)
    elapsed = time.perf_counter() - t
    failed = [r for r in done if not r.ok]
    if failed:  # limits too tight for these programs (a tiny --timeout), or a busy host
        first = failed[0].error
        raise click.ClickException(
            f"{len(failed)} of {len(jobs)} benchmark proposals failed "
            f"({first.kind if first else '?'}: {first.message if first else ''}); "
            f"raise --timeout (now {min(timeout_s, 2.0)} s) or --memory-mb"
        )
    console.print(
        f"validated {len(jobs)} proposals (2 fresh instances + 1 judge each) in {elapsed:.2f} s: "
        f"[bold]{len(jobs) / elapsed:.0f} proposals/s[/] on {workers or _cores()} workers"
    )
