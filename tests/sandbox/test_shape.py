"""``Sandbox.shape_batch``: a program parsed by the sandbox's own Python, its
entry renamed to ``f``, and the entry rules of a proposal."""

from __future__ import annotations

import pytest
from azr.sandbox import ExecResult, Sandbox


def shape(sandbox: Sandbox, program: str, rules: str = "none") -> ExecResult:
    [result] = sandbox.shape_batch([(program, rules)])
    return result


def failure(sandbox: Sandbox, program: str, rules: str = "none") -> str:
    result = shape(sandbox, program, rules)
    assert not result.ok and result.error is not None and result.error.kind == "syntax", result
    return result.error.message


def test_the_first_function_is_renamed_to_f_keeping_the_text(sandbox: Sandbox) -> None:
    source = "def solve(x):  # entry\n    return solve2(x) if x else 0\n\ndef solve2(y):\n    return solve(y - 1)\n"
    assert shape(sandbox, source).output == source.replace("solve(", "f(")
    assert shape(sandbox, "def f(a):\n    return a").output == "def f(a):\n    return a"


def test_attributes_and_keywords_of_the_same_name_are_left_alone(sandbox: Sandbox) -> None:
    source = "def count(text, sep=' '):\n    return text.count(sep) + len(text.split(sep=sep))\n\nx = count('a b')\n"
    assert shape(sandbox, source).output == source.replace("def count", "def f").replace("x = count", "x = f")
    unicode = shape(sandbox, "def é(n):\n    s = 'é'; return é(n - 1) if n else s\n").output
    assert unicode == "def f(n):\n    s = 'é'; return f(n - 1) if n else s\n"


def test_a_name_bound_some_other_way_too_gets_an_alias_instead(sandbox: Sandbox) -> None:
    # A method, a parameter and an exception of the entry's name: renaming them
    # all, or only some, would change the program; `f = name` changes nothing.
    for source in (
        "class Solution:\n    def solve(self, x):\n        return x * 2\ndef solve(x):\n    return Solution().solve(x)\n",
        "def solve(x):\n    return helper(solve=x)\ndef helper(solve):\n    return solve + 1\n",
        "def solve(x):\n    try:\n        return 1 // x\n    except ZeroDivisionError as solve:\n        return str(solve)\n",
    ):
        result = shape(sandbox, source, "helpers")
        assert result.ok and result.output == source + "\nf = solve\n", result
    assert "at least one argument" in failure(
        sandbox, "def g():\n    return g\nclass A:\n    g = 1\n", "helpers"
    )
    assert "already used" in failure(sandbox, "def g(f):\n    return f\n")


def test_helpers_before_f_leave_f_the_entry(sandbox: Sandbox) -> None:
    helper_first = "def helper(a):\n    return 2 * a\n\ndef f(a):\n    return helper(a) + 1\n"
    assert shape(sandbox, helper_first, "helpers").output == helper_first
    assert "exactly one function" in failure(sandbox, helper_first, "one_function")


def test_renaming_refuses_when_f_is_taken(sandbox: Sandbox) -> None:
    assert "already used" in failure(sandbox, "def g(a):\n    f = 2\n    return a + f")


def test_entry_rules(sandbox: Sandbox) -> None:
    assert shape(sandbox, "import math\ndef f(a):\n    return math.sqrt(a)", "one_function").ok
    assert "at least one argument" in failure(sandbox, "def f():\n    return 1", "one_function")
    nested = "def f(a):\n    def g(b):\n        return b\n    return g(a)"
    assert "exactly one function" in failure(sandbox, nested, "one_function")
    assert "exactly one function" in failure(
        sandbox, "class A:\n    pass\ndef f(a):\n    return a", "one_function"
    )
    assert shape(sandbox, nested, "helpers").ok
    assert "defines no function" in failure(sandbox, "x = 1", "one_function")
    assert shape(sandbox, "def g():\n    return 1").ok  # an answer's program needs no parameter


def test_syntax_errors_null_bytes_and_deep_nesting_are_syntax_errors(sandbox: Sandbox) -> None:
    for bad in ["def f(:\n", "def f(a):\n    return a\x00", "(" * 300 + "1" + ")" * 300]:
        assert "does not parse" in failure(sandbox, bad), bad


def test_syntax_newer_than_the_host_python_is_judged_by_the_sandbox(sandbox: Sandbox) -> None:
    # Quotes reused inside an f-string and type parameters: Python 3.12 syntax.
    for program in ['def g(d):\n    return f"{d["k"]}!"', "def g[T](x: T) -> T:\n    return x"]:
        result = shape(sandbox, program, "one_function")
        assert result.ok and result.output == program.replace("def g", "def f"), result


def test_line_endings_are_normalized(sandbox: Sandbox) -> None:
    assert shape(sandbox, "def g(a):\r\n    return g\r\n").output == "def f(a):\n    return f\n"


def test_unknown_rules_are_refused(sandbox: Sandbox) -> None:
    with pytest.raises(ValueError, match="one_function"):
        sandbox.shape_batch([("def f(a):\n    return a", "strict")])
