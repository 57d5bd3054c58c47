"""ProcessSandbox: the same verdicts as the in-process Sandbox, in order, from worker processes."""

from __future__ import annotations

import os
import signal
import time

import pytest
from azr.sandbox import Sandbox
from azr.sandbox.pool import ProcessSandbox

JOBS = [
    ("def f(x):\n    return x * 2", "21"),
    ("def f(x):\n    while True:\n        pass", "1"),
    ("def f(x):\n    import os\n    return os.getcwd()", "1"),
    ("def f(x):\n    return [0] * (10 ** 9)", "1"),
    ("def f(x):\n    import random\n    return random.random()", "1"),
    ("def f(s):\n    return s[::-1]", "'abc'"),
    ("def f(x:\n    return x", "1"),
] * 3


def _plain(results) -> list[tuple[object, ...]]:  # type: ignore[no-untyped-def]
    return [(r.ok, r.output, r.error.kind if r.error else None) for r in results]


@pytest.fixture(scope="module")
def pool():  # type: ignore[no-untyped-def]
    with ProcessSandbox(timeout_s=2.0, processes=2, chunk=3) as p:
        yield p


def test_validate_matches_the_in_process_sandbox(pool: ProcessSandbox) -> None:
    local = Sandbox(timeout_s=2.0, workers=1)
    got, want = pool.validate_batch(JOBS), local.validate_batch(JOBS)
    assert _plain(got) == _plain(want)
    assert {r.error.kind for r in got if r.error} >= {"timeout", "banned_import", "memory", "syntax"}
    assert _plain(pool.run_batch(JOBS[:6])) == _plain(local.run_batch(JOBS[:6]))


def test_checks_match_and_keep_order(pool: ProcessSandbox) -> None:
    local = Sandbox(timeout_s=2.0, workers=1)
    deductions = [("4", "4"), ("4", "'4'"), ("(1, 2)", "(1, 2)"), ("[1]", "[1, 2]")] * 4
    assert [v.correct for v in pool.check_deduction_batch(deductions)] == [
        v.correct for v in local.check_deduction_batch(deductions)
    ]
    program = "def f(a, b):\n    return a + b"
    abductions = [(program, "5", "2, 3"), (program, "5", "1, 1"), (program, "5", "f(2, 3)")]
    assert [v.correct for v in pool.check_abduction_batch(abductions)] == [
        v.correct for v in local.check_abduction_batch(abductions)
    ]
    inductions = [
        ("def f(x):\n    return x + 1", ["1", "2"], ["2", "3"]),
        ("def f(x):\n    return x", ["1"], ["2"]),
    ]
    assert [v.correct for v in pool.check_induction_batch(inductions)] == [True, False]
    assert pool.validate_batch([]) == []


def test_a_killed_worker_process_is_replaced(pool: ProcessSandbox) -> None:
    pids = {p.pid for p in pool._pool._processes.values()}
    assert pids
    os.kill(next(iter(pids)), signal.SIGKILL)
    got = pool.validate_batch(JOBS[:2] * 4)
    assert [r.ok for r in got] == [True, False] * 4


POISON = ("def f(x):\n    return 'this job kills its worker'", "1")


def _call_or_die(method: str, items: list[tuple[str, str]]) -> list[dict[str, object]]:
    """The worker's ``_call``, except that POISON kills the worker process: a
    stand-in for a job that brings its worker down (the sandbox has no known one)."""
    from azr.sandbox import pool

    if POISON in items:
        os._exit(9)
    return pool._call(method, items)


def test_a_job_that_kills_its_worker_gets_a_verdict_and_the_rest_theirs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import azr.sandbox.pool as pool_module

    monkeypatch.setattr(pool_module, "_call", _call_or_die)
    jobs = [JOBS[0], JOBS[5], POISON, JOBS[0], JOBS[6], JOBS[5]]
    with ProcessSandbox(timeout_s=1.0, processes=2, chunk=3) as sandbox:
        got = sandbox.validate_batch(jobs)
        assert [r.output for r in got] == ["42", "'cba'", None, "42", None, "'cba'"]
        assert got[2].error is not None and "died or stopped answering twice" in got[2].error.message
        assert got[4].error is not None and got[4].error.kind == "syntax"
        assert [r.ok for r in sandbox.validate_batch(JOBS[:2])] == [True, False], "the pool works after"


def test_stopped_workers_are_replaced_instead_of_waited_for() -> None:
    with ProcessSandbox(timeout_s=0.2, processes=2, chunk=2, slack_s=2.0) as sandbox:
        assert sandbox.validate_batch(JOBS[:1])[0].ok  # the workers are up
        stopped = [p.pid for p in sandbox._pool._processes.values()]
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        got = sandbox.validate_batch(JOBS[:2] * 2)
        assert [r.ok for r in got] == [True, False] * 2
        for pid in stopped:  # killed, not left stopped
            state = "?"
            for _ in range(100):
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        state = f.read().rsplit(")", 1)[1].split()[0]
                except FileNotFoundError:
                    state = "gone"
                if state in ("gone", "Z", "X"):
                    break
                time.sleep(0.05)
            assert state in ("gone", "Z", "X"), (pid, state)
