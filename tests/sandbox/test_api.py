"""The Python API of the sandbox: results as data, batches in order, the GIL released."""

from __future__ import annotations

import threading
import time

import azr
import pytest
from azr.sandbox import ErrorKind, Sandbox, error_kinds


def test_run_returns_the_repr(sandbox: Sandbox) -> None:
    result = sandbox.run("def f(a, b):\n    return [a] * b", "'x', 3")
    assert result.ok
    assert result.output == "['x', 'x', 'x']"
    assert result.error is None
    assert result.elapsed_ms > 0


def test_errors_are_data_with_a_kind(sandbox: Sandbox) -> None:
    result = sandbox.run("def f():\n    return 1 / 0", "")
    assert not result.ok
    assert result.error is not None
    assert result.error.kind == ErrorKind.RUNTIME
    assert result.error.message == "ZeroDivisionError: division by zero"
    assert result.to_dict()["error"] == {"kind": "runtime", "message": "ZeroDivisionError: division by zero"}


def test_error_kind_enum_matches_the_core() -> None:
    assert sorted(k.value for k in ErrorKind) == sorted(error_kinds())


def test_script_output_is_captured(sandbox: Sandbox) -> None:
    result = sandbox.run_script("print('hello', 6 * 7)")
    assert result.ok and result.output is None and result.stdout == "hello 42\n"


def test_validate_applies_the_proposal_checks(sandbox: Sandbox) -> None:
    assert sandbox.validate("def f(x):\n    return x", "[1, 2]").output == "[1, 2]"
    assert sandbox.validate("import time\ndef f():\n    return 1", "").error.kind == "banned_import"
    assert (
        sandbox.validate("import os\ndef f():\n    return os.urandom(2)", "").error.kind == "nondeterministic"
    )


def test_batches_keep_order(sandbox: Sandbox) -> None:
    items = [("def f(x):\n    return x * x", str(i)) for i in range(64)]
    results = sandbox.run_batch(items)
    assert [r.output for r in results] == [str(i * i) for i in range(64)]
    scripts = sandbox.run_script_batch([f"print({i})" for i in range(8)])
    assert [r.stdout for r in scripts] == [f"{i}\n" for i in range(8)]


def test_check_batches(sandbox: Sandbox) -> None:
    program = "def f(x):\n    return x % 3"
    ded = sandbox.check_deduction_batch([("1", "1"), ("1", "True"), ("1", "oops(")])
    assert [v.correct for v in ded] == [True, False, False]
    assert ded[2].error is not None and ded[2].error.kind == "syntax"
    abd = sandbox.check_abduction_batch([(program, "2", "5"), (program, "2", "4")])
    assert [v.correct for v in abd] == [True, False]
    ind = sandbox.check_induction_batch(
        [
            ("def f(x):\n    return x % 3", ["4", "5"], ["1", "2"]),
            ("def f(x):\n    return 1", ["4", "5"], ["1", "2"]),
        ]
    )
    assert [v.correct for v in ind] == [True, False]


def test_judge_compares_by_value_with_strict_types(sandbox: Sandbox) -> None:
    verdicts = sandbox.judge(
        [("{'a': 1, 'b': 2}", "{'b': 2, 'a': 1}"), ("1", "True"), ("f(", "1"), ("1", "[")]
    )
    assert verdicts == ["equal", "unequal", "left_invalid", "right_invalid"]


def test_the_gil_is_released_during_a_call(sandbox: Sandbox) -> None:
    ticks = 0
    stop = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.001)

    thread = threading.Thread(target=count)
    thread.start()
    result = sandbox.run(
        "def f():\n    s = 0\n    for i in range(3_000_000):\n        s += i\n    return s", ""
    )
    stop.set()
    thread.join()
    assert result.ok
    # The call took hundreds of milliseconds; a held GIL would have frozen the counter.
    assert ticks > 20, f"only {ticks} ticks while the sandbox ran for {result.elapsed_ms:.0f} ms"


def test_threads_share_one_sandbox(sandbox: Sandbox) -> None:
    outputs: dict[int, str | None] = {}

    def work(i: int) -> None:
        outputs[i] = sandbox.run("def f(x):\n    return x + 1", str(i)).output

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outputs == {i: str(i + 1) for i in range(16)}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout_s": 0},
        {"timeout_s": -1.0},
        {"timeout_s": float("nan")},
        {"memory_mb": 1},
        {"wall_timeout_s": 0},
        {"workers": 129},  # the instance pool has slots for 128 workers
    ],
)
def test_bad_limits_raise_config_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(azr.ConfigError):
        Sandbox(**kwargs)  # type: ignore[arg-type]


def test_config_is_visible() -> None:
    sb = Sandbox(timeout_s=3.5, memory_mb=64, workers=3, banned_modules=["json"])
    assert (sb.timeout_s, sb.memory_mb, sb.workers, sb.banned_modules) == (3.5, 64, 3, ["json"])
    assert sb.validate("import json\ndef f():\n    return 1", "").error.kind == "banned_import"
    assert sb.validate("import time\ndef f():\n    return 1", "").ok


def test_timeout_follows_the_configured_budget() -> None:
    fast = Sandbox(timeout_s=0.2)
    result = fast.run("def f():\n    while True:\n        pass", "")
    assert result.error is not None and result.error.kind == "timeout"
    assert result.elapsed_ms < 5000


def test_errors_derive_from_azr_error() -> None:
    assert issubclass(azr.SandboxError, azr.AzrError)
    assert issubclass(azr.ConfigError, azr.AzrError)


def test_results_print_as_python_objects(sandbox: Sandbox) -> None:
    ok = sandbox.run("def f(x):\n    return 'a\\n' + chr(233)", "1")
    assert repr(ok).startswith(f"ExecResult(ok=True, output={ok.output!r}, elapsed_ms=")
    bad = sandbox.run('def f(x):\n    raise ValueError("it\'s bad")', "1")
    assert bad.error is not None
    assert repr(bad.error) == f"ExecError(kind='runtime', message={bad.error.message!r})"
    assert repr(bad).startswith(f"ExecResult(ok=False, error={bad.error!r}, elapsed_ms=")
    verdict = sandbox.check_deduction_batch([("4", "'4'")])[0]
    assert repr(verdict).startswith("Verdict(correct=False, error=None, elapsed_ms=")


def test_a_process_holds_many_sandboxes_at_once() -> None:
    """Sandboxes with the same memory limit share one engine and its pool of
    instance slots; one engine per sandbox ran out of address space at about 30."""
    boxes = [Sandbox(workers=1) for _ in range(64)]
    assert boxes[0].run("def f(x):\n    return x + 1", "1").output == "2"
    assert boxes[-1].validate("def f(x):\n    return x * 2", "4").output == "8"


def test_too_many_distinct_memory_limits_is_an_error_that_says_so() -> None:
    """Each distinct memory limit has its own engine, whose pool reserves address
    space up front; past what the process may map, creating one more says why
    and what to do. A capped address space (in a child process) makes the limit
    come at a few engines on any machine."""
    import subprocess
    import sys

    script = """
import resource
from azr.sandbox import Sandbox
resource.setrlimit(resource.RLIMIT_AS, (40 << 40, 40 << 40))
boxes = []
for mb in range(64, 64 + 100):
    try:
        boxes.append(Sandbox(memory_mb=mb, workers=1))
    except Exception as e:
        print(len(boxes), type(e).__name__, e)
        break
assert boxes[0].run("def f(x):\\n    return x + 1", "1").output == "2"
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    made, kind, message = out.stdout.split(" ", 2)
    assert 1 <= int(made) < 100 and kind == "SandboxError"
    assert f"holds {made} live sandbox engines" in message
    assert "distinct memory limits" in message
