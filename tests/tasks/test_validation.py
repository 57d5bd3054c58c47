"""Proposals and answers through the sandbox, the induction split, and reward hacks."""

from __future__ import annotations

from azr.sandbox import Sandbox
from azr.tasks.types import InductionTask, TaskType, Triplet
from azr.tasks.validation import (
    Graded,
    Rules,
    as_induction,
    as_triplet,
    grade,
    parse_proposal,
    validate_proposals,
)

RULES = Rules()
PROGRAM = "def f(words, n):\n    return sorted(words, key=len)[:n]"


def r1(answer: str) -> str:
    return f"reasoning</think>\n<answer>\n{answer}\n</answer>"


def proposal(task: TaskType, answer: str, program: str | None = None, rules: Rules = RULES):
    return parse_proposal(task, r1(answer), rules, program)


def test_a_deduction_proposal_becomes_a_triplet(sandbox: Sandbox) -> None:
    p = proposal(
        TaskType.DEDUCTION, f"```python\n{PROGRAM}\n```\n```input\n['pear', 'fig', 'banana'], 2\n```"
    )
    validate_proposals(sandbox, [p])
    assert p.valid, p.reason
    assert as_triplet(p) == Triplet(PROGRAM, "['pear', 'fig', 'banana'], 2", "['fig', 'pear']")


def test_the_entry_function_is_renamed(sandbox: Sandbox) -> None:
    p = proposal(TaskType.ABDUCTION, "```python\ndef twice(x):\n    return 2 * x\n```\n```input\n4\n```")
    validate_proposals(sandbox, [p])
    assert p.valid and p.program == "def f(x):\n    return 2 * x" and p.output == "8"


def test_invalid_proposals_carry_a_reason(sandbox: Sandbox) -> None:
    cases = {
        "no format": ("just text", None),
        "no input": ("```python\ndef f(a):\n    return a\n```", "no ```input"),
        "no program": ("```input\n1\n```", "python"),
        "helpers": (
            "```python\ndef f(a):\n    return g(a)\ndef g(b):\n    return b\n```\n```input\n1\n```",
            "one function",
        ),
        "banned": (
            "```python\nimport random\ndef f(a):\n    return a\n```\n```input\n1\n```",
            "banned_import",
        ),
        "crash": ("```python\ndef f(a):\n    return a / 0\n```\n```input\n1\n```", "ZeroDivisionError"),
        "nondeterministic": (
            "```python\nimport os\ndef f(a):\n    return os.urandom(a)\n```\n```input\n4\n```",
            "nondeterministic",
        ),
        "non-literal input": ("```python\ndef f(a):\n    return a\n```\n```input\n[1] * 3\n```", "syntax"),
    }
    parsed = {
        name: parse_proposal(TaskType.DEDUCTION, text if name == "no format" else r1(text), RULES)
        for name, (text, _) in cases.items()
    }
    validate_proposals(sandbox, list(parsed.values()))
    for name, (_, reason) in cases.items():
        p = parsed[name]
        assert not p.valid, name
        if name == "no format":
            assert not p.format_ok
        else:
            assert p.format_ok and reason in (p.reason or ""), (name, p.reason)


def test_helpers_allowed_when_configured(sandbox: Sandbox) -> None:
    rules = Rules(single_function=False)
    text = "```python\ndef f(a):\n    return g(a)\ndef g(b):\n    return b + 1\n```\n```input\n1\n```"
    p = proposal(TaskType.DEDUCTION, text, rules=rules)
    validate_proposals(sandbox, [p], rules)
    assert p.valid and p.output == "2"


def _induction_answer(inputs: list[str], message: str = "Doubles its argument.") -> str:
    blocks = "\n".join(f"```input\n{i}\n```" for i in inputs)
    return f"{blocks}\n```message\n{message}\n```"


def test_an_induction_proposal_splits_five_and_five(sandbox: Sandbox) -> None:
    program = "def f(x):\n    return x * 2"
    inputs = [str(i) for i in range(10)]
    p = proposal(TaskType.INDUCTION, _induction_answer(inputs), program)
    validate_proposals(sandbox, [p])
    assert p.valid, p.reason
    task = as_induction(p)
    assert task.visible_pairs == [(str(i), str(2 * i)) for i in range(5)]
    assert task.hidden_pairs == [(str(i), str(2 * i)) for i in range(5, 10)]


def test_induction_shape_rules(sandbox: Sandbox) -> None:
    program = "def f(x):\n    return x * 2"
    bad = {
        "nine inputs": _induction_answer([str(i) for i in range(9)]),
        "repeated": _induction_answer(["1"] * 10),
        "no message": "\n".join(f"```input\n{i}\n```" for i in range(10)),
        "code in message": _induction_answer([str(i) for i in range(10)], "def f(x): return x * 2"),
        "one bad input": _induction_answer([str(i) for i in range(9)] + ["'a' + 1"]),
    }
    parsed = {k: proposal(TaskType.INDUCTION, v, program) for k, v in bad.items()}
    validate_proposals(sandbox, list(parsed.values()))
    for name, p in parsed.items():
        assert p.format_ok and not p.valid and p.reason, name


def test_a_message_may_use_words_the_code_also_uses(sandbox: Sandbox) -> None:
    program = (
        "def f(nums):\n    for n in nums:\n        if n > 10:\n            return True\n    return False"
    )
    inputs = [f"[{i}, {i * 7}]" for i in range(10)]
    plain = proposal(
        TaskType.INDUCTION,
        _induction_answer(inputs, "True if some number exceeds 10; otherwise return False."),
        program,
    )
    copied = proposal(
        TaskType.INDUCTION,
        _induction_answer(inputs, "It does: for n in nums: if n > 10: return True"),
        program,
    )
    validate_proposals(sandbox, [plain, copied])
    assert plain.valid, plain.reason
    assert not copied.valid and copied.reason == "the message contains the program's code"


TRIPLET = Triplet("def f(x):\n    return x % 10 == 3", "13", "True")


def test_text_that_is_not_valid_unicode_is_a_format_failure(sandbox: Sandbox) -> None:
    bad = r1("```output\n'\ud800'\n```")
    [result] = grade(sandbox, [Graded(TaskType.DEDUCTION, bad, triplet=TRIPLET)])
    assert not result.format_ok and result.reward == -1.0
    p = proposal(TaskType.DEDUCTION, r1("```python\ndef f(x):\n    return '\udfff'\n```\n```input\n1\n```"))
    validate_proposals(sandbox, [p])
    assert not p.format_ok and not p.valid


def test_grading_all_three_tasks(sandbox: Sandbox) -> None:
    ind = InductionTask(
        "def f(x):\n    return x + 1", tuple(map(str, range(10))), tuple(map(str, range(1, 11))), "adds one"
    )
    items = [
        Graded(TaskType.DEDUCTION, r1("```output\nTrue\n```"), triplet=TRIPLET),
        Graded(TaskType.DEDUCTION, r1("```output\nFalse\n```"), triplet=TRIPLET),
        Graded(TaskType.DEDUCTION, "no tags", triplet=TRIPLET),
        Graded(TaskType.ABDUCTION, r1("```input\n23\n```"), triplet=TRIPLET),
        Graded(TaskType.ABDUCTION, r1("```input\n24\n```"), triplet=TRIPLET),
        Graded(TaskType.INDUCTION, r1("```python\ndef g(n):\n    return n + 1\n```"), induction=ind),
        Graded(TaskType.INDUCTION, r1("```python\ndef f(n):\n    return n + 2\n```"), induction=ind),
        # A helper written before f: f is still the entry.
        Graded(
            TaskType.INDUCTION,
            r1("```python\ndef one():\n    return 1\n\ndef f(n):\n    return n + one()\n```"),
            induction=ind,
        ),
    ]
    results = grade(sandbox, items)
    assert [(r.format_ok, r.correct, r.reward) for r in results] == [
        (True, True, 1.0),
        (True, False, -0.5),
        (False, False, -1.0),
        (True, True, 1.0),
        (True, False, -0.5),
        (True, True, 1.0),
        (True, False, -0.5),
        (True, True, 1.0),
    ]


def test_reward_hacks_earn_nothing(sandbox: Sandbox) -> None:
    forged_eq = "class A:\n    def __eq__(self, o):\n        return True\n    def __repr__(self):\n        return 'True'\n"
    ind = InductionTask("def f(x):\n    return x > 0", ("1", "-1"), ("True", "False"), "positive?", visible=0)
    hacks = [
        Graded(TaskType.ABDUCTION, r1("```input\n0) or (True\n```"), triplet=TRIPLET),
        Graded(
            TaskType.ABDUCTION,
            r1("```input\n(setattr(f, '__code__', (lambda x: True).__code__), 0)[1]\n```"),
            triplet=TRIPLET,
        ),
        Graded(
            TaskType.ABDUCTION,
            r1("```input\n__import__('os').system('touch /tmp/azr_pwned')\n```"),
            triplet=TRIPLET,
        ),
        Graded(TaskType.DEDUCTION, r1("```output\n__import__('builtins').True\n```"), triplet=TRIPLET),
        Graded(
            TaskType.DEDUCTION,
            r1("```output\ntype('A', (), {'__eq__': lambda s, o: True})()\n```"),
            triplet=TRIPLET,
        ),
        Graded(
            TaskType.DEDUCTION,
            r1("```output\n1\n```"),
            triplet=Triplet("def f(a):\n    return a", "True", "True"),
        ),
        Graded(
            TaskType.DEDUCTION,
            r1("```output\n1.0\n```"),
            triplet=Triplet("def f(a):\n    return a", "1", "1"),
        ),
        Graded(
            TaskType.DEDUCTION,
            r1("```output\nTrue\n```"),
            triplet=Triplet("def f(a):\n    return a", "1", "1"),
        ),
        Graded(
            TaskType.INDUCTION, r1(f"```python\n{forged_eq}def f(x):\n    return A()\n```"), induction=ind
        ),
        Graded(
            TaskType.INDUCTION,
            r1("```python\nimport builtins\nbuiltins.repr = lambda o: 'True'\ndef f(x):\n    return 0\n```"),
            induction=ind,
        ),
    ]
    results = grade(sandbox, hacks)
    for item, result in zip(hacks, results, strict=True):
        assert result.reward <= -0.5 and not result.correct, (item.response, result)
    import os

    assert not os.path.exists("/tmp/azr_pwned")
