"""What the host checks itself, because a program can rewrite the guest.

A program runs in the same interpreter as the guest module that reports its
result, so it can switch the guest's own checks off or write any response.
The host therefore checks the output's size and the error's kind itself, and
the reused judge instance is retired before its own state can fail a job.
"""

from __future__ import annotations

from azr.sandbox import Sandbox

# Turn off the guest's size check (it counts with the builtin `len`).
LEN_PATCHED = """
import builtins
def f(x):
    builtins.len = lambda obj: 0
    return "x" * 50_000
"""

# Replace the guest's response writer: any output, any size.
RESPONSE_FORGED = """
import sys
def f(x):
    guest = sys.modules["azr_guest"]
    guest._dumps = lambda response, _real=guest._dumps: _real({"ok": True, "output": "'" + "y" * 30_000 + "'"})
    return 1
"""

KIND_FORGED = """
import sys
def f(x):
    raise sys.modules["azr_guest"].GuestError("{kind}", "forged")
"""


def test_an_output_past_the_limit_is_refused_even_with_the_guest_check_off(sandbox: Sandbox) -> None:
    for result in (sandbox.run(LEN_PATCHED, "1"), sandbox.validate(LEN_PATCHED, "1")):
        assert not result.ok and result.error is not None
        assert result.error.kind == "output_too_large", result.error
        assert result.output is None


def test_a_forged_response_cannot_pass_a_large_output(sandbox: Sandbox) -> None:
    result = sandbox.run(RESPONSE_FORGED, "1")
    assert not result.ok and result.error is not None and result.error.kind == "output_too_large"
    assert result.output is None
    small = Sandbox(max_output_chars=100_000)
    assert small.run(RESPONSE_FORGED, "1").output == "'" + "y" * 30_000 + "'", "the cap is the only rule"


def test_a_program_cannot_choose_its_error_kind(sandbox: Sandbox) -> None:
    for kind in ("invalid_request", "timeout", "nondeterministic", "banned_import"):
        for result in (
            sandbox.run(KIND_FORGED.format(kind=kind), "1"),
            sandbox.validate(KIND_FORGED.format(kind=kind), "1"),
        ):
            assert result.error is not None
            assert result.error.kind == "runtime", (kind, result.error)
            assert "reported an error of kind" in result.error.message
    memory = sandbox.run(KIND_FORGED.format(kind="memory"), "1")
    assert memory.error is not None and memory.error.kind == "memory", "a kind a program can cause passes"


def test_a_limit_hit_only_by_the_second_run_is_that_limit_not_nondeterminism() -> None:
    # str hashes differ between the two runs (different hash secrets): the
    # first run returns, the second spins until its CPU budget is gone, as a
    # deterministic program can when a busy host trips the wall-clock backstop.
    sandbox = Sandbox(timeout_s=0.3, workers=1)
    first_hash = sandbox.run('def f(x):\n    return hash("azr" + x)', "'-probe'").output
    program = f'def f(x):\n    if hash("azr" + x) == {first_hash}:\n        return 1\n    while True:\n        pass\n'
    result = sandbox.validate(program, "'-probe'")
    assert result.error is not None
    assert result.error.kind == "timeout", result.error
    assert result.error.message.startswith("second run:")
    assert result.output is None, "a failed validation has no output"


def test_the_judge_is_retired_before_its_own_heap_fails_a_job() -> None:
    # Compiling a program leaves its names interned in the judge; at a small
    # memory limit, a few such programs used to leave the judge unable to
    # vet the next one.
    def many_names(tag: int) -> str:
        names = "\n".join(f"    v{tag}_{i:06d}_{'x' * 24} = 0" for i in range(18_000))
        return f"def g():\n{names}\ndef f(x):\n    return x\n"

    sandbox = Sandbox(timeout_s=5, workers=1, memory_mb=64)
    program = many_names(999)
    assert sandbox.validate(program, "1").ok
    for tag in range(12):
        sandbox.validate(many_names(tag), "1")
    again = sandbox.validate(program, "1")
    assert again.ok, again.error
