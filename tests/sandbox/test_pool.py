"""ProcessSandbox: the same verdicts as the in-process Sandbox, in order, from worker processes."""

from __future__ import annotations

import os
import signal

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
