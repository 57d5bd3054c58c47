"""Grading model responses: code in the sandbox, math with math-verify, CruxEval
by comparing literals in the sandbox as CRUXEval's harness does.

Every function takes samples and the *answers* already extracted from the
responses (see ``azr.eval.prompts.extract``) and returns one ``Grade`` per
sample, in order. Nothing a model wrote runs in this process: code is judged
by ``azr.eval.harness`` inside fresh sandbox instances, answers to CruxEval
inside them too, and math answers are only parsed (by sympy through
math-verify) in child processes.
"""

from __future__ import annotations

import ast
import hashlib
import json
import multiprocessing
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from azr.eval.data import Sample
from azr.sandbox import Sandbox, cache_dir

HARNESS = (Path(__file__).with_name("harness.py")).read_text()


@dataclass
class Grade:
    correct: bool
    """The headline verdict (for code with plus tests: base and plus both pass)."""
    base: bool | None = None
    """Code sets with EvalPlus base tests: the base verdict alone."""
    detail: str = ""
    """Why it failed, for the per-sample file."""
    invalid: bool = False
    """The benchmark item itself is broken (its reference fails its tests); counted wrong and reported."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- code


def _prompt_context(prompt: str, entry: str, defined: set[str]) -> str:
    """What a full-function answer may rely on from a HumanEval-style prompt: its imports and its
    helper definitions (``poly`` beside ``find_zero``), except the entry point and what the answer
    defines itself."""
    try:
        tree = ast.parse(prompt)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return ""
    lines = prompt.splitlines()
    out = []
    for node in tree.body:
        name = getattr(node, "name", None)
        if isinstance(node, ast.Import | ast.ImportFrom) or (
            isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            and name != entry
            and name not in defined
        ):
            first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
            out.extend(lines[first - 1 : (node.end_lineno or node.lineno)])
    return "\n".join(out)


def candidate_program(sample: Sample, code: str) -> str:
    """The program to test: the answer's code, completed from the prompt when it is a continuation."""
    gold = sample.gold
    entry = gold.get("entry_point")
    if gold.get("style") in ("stdin", "functional") or entry is None:
        return code
    try:
        defined = {
            n.name
            for n in ast.parse(code).body
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        }
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # any model text: never a crash
        defined = set()
    if entry in defined:
        context = _prompt_context(gold.get("prompt", ""), entry, defined)
        return f"{context}\n\n{code}" if context else code
    return gold.get("prompt", "") + code  # a body that continues the stub


def _program(job: dict[str, Any]) -> str:
    return f"{HARNESS}\n_JOB = {json.dumps(job)!r}\n"


def _evalplus_job(sample: Sample, part: str) -> dict[str, Any]:
    g = sample.gold
    return {
        "entry_point": g["entry_point"],
        "inputs": json.dumps(g["base_input"] if part == "base" else g["plus_input"]),
        "atol": g["atol"],
        "mbpp_task": g.get("mbpp_task"),
        "special": g.get("special"),
    }


def _job(sample: Sample, code: str, part: str, expected: str = "") -> str:
    g = sample.gold
    program = candidate_program(sample, code)
    if g["style"] == "evalplus":
        job = {"kind": "evalplus", "candidate": program, "expected": expected, **_evalplus_job(sample, part)}
    else:  # test code (LiveCodeBench's styles run test by test: Grader._test_by_test)
        imports = "\n".join(g.get("imports") or [])
        job = {
            "kind": "test_code",
            "entry_point": g["entry_point"],
            "test": g["test"],
            "candidate": f"{imports}\n{program}",
        }
    return _program(job)


def _inline_job(sample: Sample, part: str, candidate: str) -> str:
    """The reference beside ``candidate`` (a complete program), input by input."""
    job = {"kind": "evalplus_inline", "reference": sample.gold["reference"], "candidate": candidate}
    return _program({**job, **_evalplus_job(sample, part)})


def _harness_result(result: Any) -> tuple[Any, Any, Any, Any] | None:
    """The harness's ``(status, passed, total, message)``, or None when the run gave none."""
    if not result.ok:
        return None
    try:
        status, passed, total, message = ast.literal_eval(result.output or "")
    except (ValueError, SyntaxError, TypeError, MemoryError):
        return None
    return status, passed, total, message


def _verdict(result: Any) -> tuple[str, str]:
    if not result.ok:
        err = result.error
        return "fail", f"{err.kind}: {err.message}" if err else "failed"
    found = _harness_result(result)
    if found is None:
        return "fail", "the harness returned no verdict"
    status, passed, total, message = found
    return str(status), str(message) if status != "pass" else f"{passed}/{total} tests"


@dataclass
class Reference:
    """A test set's reference outputs (pickled inside the sandbox, opaque here) and their run time."""

    expected: str | None
    seconds: float
    error: str = ""
    inline: bool = False
    """The outputs are too large to carry: the reference runs beside each candidate instead."""


def _too_large(result: Any, error: str) -> bool:
    """A reference that ran out of room for its outputs (not one that is wrong)."""
    kind = result.error.kind if result.error is not None else ""
    return kind in ("memory", "output_too_large", "invalid_request") or error.startswith("MemoryError")


class Grader:
    """Code grading with EvalPlus-style time limits.

    Reference outputs come from the dataset's canonical solution, run once per
    test set in the sandbox (``reference_timeout_s``) and cached on disk; a
    candidate then gets ``max(timeout_s, time_factor × the reference's time)``
    of sandbox CPU for the same tests, as EvalPlus scales its limits from the
    ground truth's run time.
    """

    def __init__(
        self,
        timeout_s: float = 20.0,
        memory_mb: int = 512,
        workers: int = 0,
        reference_timeout_s: float = 600.0,
        reference_memory_mb: int = 2048,
        time_factor: float = 4.0,
        cache: Path | None = None,
    ) -> None:
        self.timeout_s, self.memory_mb, self.workers = timeout_s, memory_mb, workers
        self.reference_timeout_s, self.time_factor = reference_timeout_s, time_factor
        self.reference_memory_mb = reference_memory_mb
        self.cache = cache if cache is not None else Path(cache_dir()) / "eval-references"
        self._sandboxes: dict[tuple[float, int], Sandbox] = {}

    def sandbox(self, timeout_s: float, memory_mb: int | None = None) -> Sandbox:
        """One sandbox per time budget (budgets are rounded up to a few steps).

        Jobs carry their tests and reference outputs, so requests and outputs
        may be large (MBPP+ has sets with megabytes of inputs).
        """
        budget = self.timeout_s
        while budget < timeout_s:
            budget *= 2
        key = (budget, memory_mb or self.memory_mb)
        if key not in self._sandboxes:
            self._sandboxes[key] = Sandbox(
                timeout_s=budget,
                memory_mb=key[1],
                workers=self.workers,
                max_output_chars=1 << 28,
                max_source_bytes=1 << 28,
            )
        return self._sandboxes[key]

    def references(self, items: Sequence[tuple[Sample, str]]) -> list[Reference]:
        """The reference of each (sample, "base"|"plus"), from the cache or the sandbox."""
        out: list[Reference | None] = [None] * len(items)
        todo: list[tuple[int, Path, str]] = []
        for k, (s, part) in enumerate(items):
            job = {"kind": "evalplus_reference", "reference": s.gold["reference"], **_evalplus_job(s, part)}
            program = _program(job)
            key = hashlib.sha256(program.encode()).hexdigest()
            path = self.cache / key[:2] / f"{key}.json"
            try:
                hit = json.loads(path.read_text())
                out[k] = Reference(hit["expected"], float(hit["seconds"]), inline=bool(hit.get("inline")))
            except (OSError, ValueError, KeyError, TypeError):
                todo.append((k, path, program))
        if todo:
            sb = self.sandbox(self.reference_timeout_s, self.reference_memory_mb)
            results = sb.run_batch([(p, "") for _, _, p in todo])
            for (k, path, _), r in zip(todo, results, strict=True):
                status, _, _, blob = _harness_result(r) or ("fail", 0, 0, "")
                error = blob if status != "reference" else ""
                if r.error is not None:
                    error = f"{r.error.kind}: {r.error.message}"
                if status == "reference":
                    ref = Reference(blob, r.elapsed_ms / 1000.0)
                elif _too_large(r, error):
                    ref = self._inline_probe(items[k])
                else:
                    ref = Reference(None, r.elapsed_ms / 1000.0, error or status)
                out[k] = ref
                if ref.expected is not None or ref.inline:
                    self._store(path, ref)
        return [r for r in out if r is not None]

    def _inline_probe(self, item: tuple[Sample, str]) -> Reference:
        """Time the reference against itself in inline mode (it runs twice there)."""
        s, part = item
        program = _inline_job(s, part, s.gold["reference"])
        r = self.sandbox(self.reference_timeout_s, self.reference_memory_mb).run(program, "")
        status, message = _verdict(r)
        if status != "pass":
            return Reference(None, r.elapsed_ms / 1000.0, message)
        return Reference(None, r.elapsed_ms / 2000.0, inline=True)

    def _store(self, path: Path, ref: Reference) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(
                json.dumps({"expected": ref.expected, "seconds": ref.seconds, "inline": ref.inline})
            )
            tmp.replace(path)
        except OSError:
            pass  # a read-only cache only costs time

    def grade(self, samples: Sequence[Sample], codes: Sequence[str | None]) -> list[Grade]:
        """Run every answer's tests in the sandbox (batched, in parallel)."""
        parts: list[tuple[int, str]] = []
        per_test: list[tuple[int, Sample, str]] = []  # LiveCodeBench's styles
        for i, (s, code) in enumerate(zip(samples, codes, strict=True)):
            if code is None:
                continue
            if s.gold["style"] in ("stdin", "functional"):
                per_test.append((i, s, code))
            elif s.gold["style"] == "evalplus":
                parts.append((i, "base"))
                if s.gold["plus_input"]:
                    parts.append((i, "plus"))
            else:
                parts.append((i, "all"))
        verdicts = {(i, "all"): v for i, v in self._test_by_test(per_test).items()}
        ep = [(i, p) for i, p in parts if p != "all"]
        refs = dict(zip(ep, self.references([(samples[i], p) for i, p in ep]), strict=True))
        by_budget: dict[tuple[float, int], list[tuple[tuple[int, str], str]]] = {}
        for i, p in parts:
            ref = refs.get((i, p))
            code = codes[i]
            assert code is not None
            memory = self.memory_mb
            if ref is None:
                budget, program = self.timeout_s, _job(samples[i], code, p)
            elif ref.inline:
                budget = max(self.timeout_s, (1 + self.time_factor) * ref.seconds)
                memory = self.reference_memory_mb
                program = _inline_job(samples[i], p, candidate_program(samples[i], code))
            elif ref.expected is None:
                verdicts[(i, p)] = ("reference_error", ref.error)
                continue
            else:
                budget = max(self.timeout_s, self.time_factor * ref.seconds)
                program = _job(samples[i], code, p, ref.expected)
            by_budget.setdefault((budget, memory), []).append(((i, p), program))
        for (budget, memory), jobs in by_budget.items():
            results = self.sandbox(budget, memory).run_batch([(program, "") for _, program in jobs])
            for (key, _), r in zip(jobs, results, strict=True):
                verdicts[key] = _verdict(r)
        return [self._grade(s, i, codes[i], verdicts) for i, s in enumerate(samples)]

    def _test_by_test(self, items: Sequence[tuple[int, Sample, str]]) -> dict[int, tuple[str, str]]:
        """LiveCodeBench's way: each test in its own run with its own time and
        memory limits, in order, stopping at an answer's first failure. Round k
        runs test k of every answer still passing, all in one parallel batch."""
        verdicts: dict[int, tuple[str, str]] = {}
        alive = {i: (s, candidate_program(s, code)) for i, s, code in items}
        sandbox = self.sandbox(self.timeout_s)
        k = 0
        while alive:
            batch = list(alive.items())
            jobs = [
                _program(
                    {
                        "kind": s.gold["style"],
                        "candidate": program,
                        "tests": [s.gold["tests"][k]],
                        "func_name": s.gold.get("func_name"),
                        "first": k,
                    }
                )
                for _, (s, program) in batch
            ]
            for (i, (s, _)), r in zip(batch, sandbox.run_batch([(j, "") for j in jobs]), strict=True):
                status, message = _verdict(r)
                if status != "pass":
                    verdicts[i] = (status, message if message.startswith("test ") else f"test {k}: {message}")
                    del alive[i]
                elif k + 1 == len(s.gold["tests"]):
                    verdicts[i] = ("pass", f"{k + 1}/{k + 1} tests")
                    del alive[i]
            k += 1
        return verdicts

    @staticmethod
    def _grade(
        s: Sample, i: int, code: str | None, verdicts: dict[tuple[int, str], tuple[str, str]]
    ) -> Grade:
        evalplus = s.gold["style"] == "evalplus"
        if code is None:
            return Grade(False, False if evalplus else None, "no code in the answer")
        if not evalplus:
            status, message = verdicts[(i, "all")]
            if status == "reference_error":
                return Grade(False, None, f"a test case cannot be read: {message}", invalid=True)
            return Grade(status == "pass", None, message)
        base = verdicts[(i, "base")]
        plus = verdicts.get((i, "plus"), ("pass", ""))
        broken = [m for st, m in (base, plus) if st == "reference_error"]
        if broken:
            return Grade(False, False, f"the reference solution fails: {broken[0]}", invalid=True)
        ok_base = base[0] == "pass"
        ok = ok_base and plus[0] == "pass"
        detail = base[1] if not ok_base else plus[1] if not ok else f"base {base[1]}, plus {plus[1]}"
        return Grade(ok, ok_base, detail)


# --------------------------------------------------------------------------- CruxEval


#: Compares two literal texts with ``==``, inside the sandbox: CRUXEval's own
#: harness checks ``assert gold == answer``, so ``1`` equals ``1.0`` and ``True``
#: there, unlike self-play's strict deduction check (SPEC §3). Both sides are
#: parsed with ``ast.literal_eval``, so a model's answer is never code, and an
#: object with a forged ``__eq__`` cannot take part. None: a side is not a literal.
_EQUAL = """
import ast


def f(gold, answer):
    try:
        left, right = ast.literal_eval(gold), ast.literal_eval(answer)
    except Exception:
        return None
    return left == right
"""


def _equal_batch(sandbox: Sandbox, pairs: Sequence[tuple[str, str]]) -> list[tuple[bool, str]]:
    """(equal, why not) for each (gold, answer) pair of literal texts."""
    out = []
    for r in sandbox.run_batch([(_EQUAL, repr(pair)[1:-1]) for pair in pairs]):
        if not r.ok:
            out.append((False, f"{r.error.kind}: {r.error.message}" if r.error else "no output"))
        elif r.output == "True":
            out.append((True, ""))
        elif r.output == "None":
            out.append((False, "not a literal"))
        else:
            out.append((False, "wrong output"))
    return out


def grade_cruxeval(sandbox: Sandbox, samples: Sequence[Sample], answers: Sequence[str | None]) -> list[Grade]:
    """CruxEval-O: the answer, a literal, equals the gold output (``==``, as
    CRUXEval's harness compares). CruxEval-I: f runs on the answer and its output
    equals the gold output the same way."""
    out: list[Grade | None] = [None] * len(samples)
    ded = [
        (i, s, a)
        for i, (s, a) in enumerate(zip(samples, answers, strict=True))
        if a is not None and s.kind == "cruxeval_o"
    ]
    abd = [
        (i, s, a)
        for i, (s, a) in enumerate(zip(samples, answers, strict=True))
        if a is not None and s.kind == "cruxeval_i"
    ]
    for (i, _, _), (ok, why) in zip(
        ded, _equal_batch(sandbox, [(s.gold["output"], a) for _, s, a in ded]), strict=True
    ):
        out[i] = Grade(ok, None, why)
    # CruxEval-I answers are any expressions, as in CRUXEval's own harness (two of
    # its gold inputs are lambdas): f(<answer>) runs in a fresh instance, which
    # refuses anything but one call of f, and its output's repr is then compared
    # with the gold output like a CruxEval-O answer.
    ran: list[tuple[int, Sample, str]] = []
    for (i, s, _), r in zip(abd, sandbox.run_batch([(s.gold["program"], a) for _, s, a in abd]), strict=True):
        if r.ok and r.output is not None:
            ran.append((i, s, r.output))
        else:
            out[i] = Grade(False, None, f"{r.error.kind}: {r.error.message}" if r.error else "no output")
    judged = _equal_batch(sandbox, [(s.gold["output"], output) for _, s, output in ran])
    for (i, _, _), (ok, why) in zip(ran, judged, strict=True):
        out[i] = Grade(ok, None, why)
    return [g if g is not None else Grade(False, None, "no answer") for g in out]


# --------------------------------------------------------------------------- math


def _verify_chunk(items: list[tuple[str, list[str]]]) -> list[bool]:
    """Runs in a child process's main thread, where math-verify's SIGALRM timeouts work."""
    from math_verify import parse, verify

    results = []
    for prediction, answers in items:
        ok = False
        try:
            predicted = parse(prediction)
            for answer in answers:
                gold = parse(f"${answer}$") or parse(answer)
                if gold and predicted and verify(gold, predicted):
                    ok = True
                    break
        except Exception:  # a parse or verify failure of model text is a wrong answer
            ok = False
        results.append(ok)
    return results


def require_math_verify() -> None:
    try:
        import math_verify  # noqa: F401
    except ImportError as exc:
        raise RuntimeError("math grading needs math-verify: pip install 'azr[eval]'") from exc


def _started() -> bool:
    return True


def grade_math(
    samples: Sequence[Sample],
    answers: Sequence[str | None],
    processes: int = 2,
    chunk: int = 32,
    item_timeout_s: float = 20.0,
) -> list[Grade]:
    """math-verify on each answer against every accepted gold answer.

    math-verify times out its sympy work with SIGALRM, which works only in a
    main thread, so grading runs in spawned child processes; a chunk that
    still overruns its deadline (``item_timeout_s`` per item) has its
    process killed and its items graded wrong.
    """
    require_math_verify()
    todo = [(i, (a, s.gold["answers"])) for i, (s, a) in enumerate(zip(samples, answers, strict=True)) if a]
    verdicts: dict[int, bool] = {}
    details: dict[int, str] = {}
    if todo:
        chunks = [todo[k : k + chunk] for k in range(0, len(todo), chunk)]
        ctx = multiprocessing.get_context("spawn")
        pool = ctx.Pool(max(1, min(processes, len(chunks))))
        try:
            try:
                # Spawned workers re-import the caller's main module; one that starts
                # work at import (a script without a __main__ guard) kills every
                # worker at start, and the pool would retry them until the deadline.
                pool.apply_async(_started).get(timeout=120)
            except multiprocessing.TimeoutError as exc:
                raise RuntimeError(
                    "the math grading processes did not start; a script that grades or "
                    "evaluates must keep its work under `if __name__ == '__main__':`"
                ) from exc
            pending = [(c, pool.apply_async(_verify_chunk, ([item for _, item in c],))) for c in chunks]
            deadline = time.monotonic() + 60.0 + item_timeout_s * chunk * len(chunks) / max(1, processes)
            for c, res in pending:
                try:
                    oks = res.get(timeout=max(1.0, deadline - time.monotonic()))
                except multiprocessing.TimeoutError:
                    oks = [False] * len(c)
                    for i, _ in c:
                        details[i] = "grading timed out"
                for (i, _), ok in zip(c, oks, strict=True):
                    verdicts[i] = ok
        finally:
            pool.terminate()
            pool.join()
    grades = []
    for i, a in enumerate(answers):
        if not a:
            grades.append(Grade(False, None, "no answer"))
        else:
            ok = verdicts.get(i, False)
            grades.append(Grade(ok, None, details.get(i, "" if ok else "wrong answer")))
    return grades
