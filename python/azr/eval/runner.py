"""``azr eval``: load benchmarks, generate greedily, grade, summarize, write, compare."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from azr.eval import data as eval_data
from azr.eval import grading
from azr.eval import prompts as eval_prompts
from azr.eval.data import BENCHMARKS, SUITES, Sample
from azr.rollout.base import RolloutEngine, SamplingParams


@dataclass
class EvalOptions:
    suites: tuple[str, ...] = ("all",)
    limit: int | None = None
    """The first N items of each benchmark (None: all)."""
    max_tokens: int = 8192
    template: str = "r1"
    """Template for code and CruxEval questions: ``r1`` or ``chat``."""
    math_template: str = "qwen-boxed"
    data: dict[str, str] = field(default_factory=dict)
    """Per-benchmark sources (``name -> path or hub id``)."""
    data_dir: Path | None = None
    lcb_start: str | None = None
    """LiveCodeBench problems from this contest date (YYYY-MM-DD) on."""
    lcb_end: str | None = None
    timeout_s: float = 20.0
    """Sandbox CPU limit per graded program run (all of one sample's base or plus tests)."""
    memory_mb: int = 512
    workers: int = 0
    math_processes: int = 2


@dataclass
class Record:
    """One graded sample, as written to ``samples.jsonl``."""

    benchmark: str
    id: str
    prompt: str
    response: str
    answer: str | None
    formatted: bool
    correct: bool
    base: bool | None
    detail: str
    invalid: bool = False
    tokens: int = 0
    finished: bool = True


def load_samples(opts: EvalOptions) -> dict[str, list[Sample]]:
    """Every selected benchmark's samples; sources are checked before any generation starts."""
    out = {}
    read: dict[str, list[dict[str, Any]]] = {}
    for bench in eval_data.benchmarks_for(opts.suites):
        out[bench.name] = eval_data.load(
            bench, opts.data, opts.data_dir, opts.limit, opts.lcb_start, opts.lcb_end, read
        )
    return out


def _template(s: Sample, opts: EvalOptions) -> str:
    return opts.math_template if s.kind == "math" else opts.template


def generate(
    engine: RolloutEngine,
    tokenizer: Any,
    samples: Mapping[str, list[Sample]],
    opts: EvalOptions,
    console: Console | None = None,
) -> dict[str, list[tuple[str, str, int, bool]]]:
    """Greedy (prompt, text, tokens, finished) per sample; a repeated prompt is generated once."""
    prompts = {
        name: [eval_prompts.render(s, _template(s, opts), tokenizer) for s in ss]
        for name, ss in samples.items()
    }
    unique = list(dict.fromkeys(p for ps in prompts.values() for p in ps))
    params = SamplingParams(
        n=1,
        temperature=0.0,
        max_tokens=opts.max_tokens,
        logprobs=False,
        stop_token_ids=eval_prompts.stop_token_ids(tokenizer),
    )
    done: dict[str, tuple[str, int, bool]] = {}
    chunk = 64
    start = time.perf_counter()
    for k in range(0, len(unique), chunk):
        part = unique[k : k + chunk]
        for p, (c,) in zip(part, engine.generate(part, params), strict=True):
            done[p] = (c.text, len(c.token_ids), c.finished)
        if console is not None:
            console.print(
                f"  generated {min(k + chunk, len(unique))}/{len(unique)} responses "
                f"({time.perf_counter() - start:.0f} s)"
            )
    return {name: [(p, *done[p]) for p in ps] for name, ps in prompts.items()}


def grade(
    samples: Mapping[str, list[Sample]],
    responses: Mapping[str, Sequence[tuple[str, str, int, bool]]],
    opts: EvalOptions,
    grader: grading.Grader | None = None,
) -> dict[str, list[Record]]:
    """Grade every response; ``responses`` holds (prompt, text, tokens, finished) per sample."""
    grader = grader or grading.Grader(opts.timeout_s, opts.memory_mb, opts.workers)
    out: dict[str, list[Record]] = {}
    for name, ss in samples.items():
        rs = responses[name]
        extracted = [eval_prompts.extract(s, r[1], _template(s, opts)) for s, r in zip(ss, rs, strict=True)]
        answers = [a for a, _ in extracted]
        kind = BENCHMARKS[name].kind
        if kind == "math":
            grades = grading.grade_math(ss, answers, processes=opts.math_processes)
        elif kind in ("cruxeval_o", "cruxeval_i"):
            grades = grading.grade_cruxeval(grader.sandbox(opts.timeout_s), ss, answers)
        else:
            grades = grader.grade(ss, answers)
        out[name] = [
            Record(name, s.id, r[0], r[1], a, f, g.correct, g.base, g.detail, g.invalid, r[2], r[3])
            for s, r, (a, f), g in zip(ss, rs, extracted, grades, strict=True)
        ]
    return out


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize(records: Mapping[str, list[Record]]) -> dict[str, Any]:
    """Per-benchmark scores (percent) and the paper's averages over what was evaluated."""
    benches: dict[str, Any] = {}
    for name, rs in records.items():
        b = BENCHMARKS[name]
        n = len(rs)
        entry: dict[str, Any] = {
            "title": b.title,
            "group": b.group,
            "n": n,
            "score": 100.0 * sum(r.correct for r in rs) / n if n else None,
            "format_rate": 100.0 * sum(r.formatted for r in rs) / n if n else None,
            "truncated": sum(not r.finished for r in rs),
            "invalid": sum(r.invalid for r in rs),
        }
        if b.base_title and any(r.base is not None for r in rs):
            entry["base_title"] = b.base_title
            entry["base"] = 100.0 * sum(bool(r.base) for r in rs) / n if n else None
        benches[name] = entry

    def avg(group: str) -> float | None:
        return _mean(
            [benches[n]["score"] for n in SUITES[group] if n in benches and benches[n]["score"] is not None]
        )

    code, math_, indist = avg("code"), avg("math"), avg("indist")
    overall = (code + math_) / 2 if code is not None and math_ is not None else None
    return {
        "benchmarks": benches,
        "averages": {"code": code, "math": math_, "overall": overall, "indist": indist},
    }


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f}"


def table(results: Mapping[str, Any], title: str = "azr eval") -> Table:
    t = Table(title=title)
    t.add_column("benchmark")
    t.add_column("n", justify="right")
    t.add_column("score", justify="right")
    t.add_column("format ok", justify="right")
    for group in ("code", "math", "indist"):
        for b in results["benchmarks"].values():
            if b["group"] != group:
                continue
            if "base" in b:
                t.add_row(f"{b['base_title']} (base tests)", str(b["n"]), _fmt(b["base"]), "")
            t.add_row(b["title"], str(b["n"]), _fmt(b["score"]), _fmt(b["format_rate"]))
    a = results["averages"]
    t.add_section()
    for key, label in (
        ("code", "code average"),
        ("math", "math average"),
        ("overall", "overall"),
        ("indist", "in-distribution"),
    ):
        if a.get(key) is not None:
            t.add_row(label, "", _fmt(a[key]), "")
    return t


def write(out: Path, results: Mapping[str, Any], records: Mapping[str, list[Record]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(out / "results.json")
    with (out / "samples.jsonl").open("w") as f:
        for rs in records.values():
            for r in rs:
                f.write(json.dumps(asdict(r)) + "\n")


def write_generations(out: Path, responses: Mapping[str, Sequence[tuple[str, str, int, bool]]]) -> None:
    """``generations.jsonl``: every (benchmark, index, prompt, response, tokens, finished)."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "generations.jsonl.tmp"
    with tmp.open("w") as f:
        for name, rs in responses.items():
            for i, (prompt, text, tokens, finished) in enumerate(rs):
                row = {"benchmark": name, "index": i, "prompt": prompt, "response": text}
                f.write(json.dumps(row | {"tokens": tokens, "finished": finished}) + "\n")
    tmp.replace(out / "generations.jsonl")


def evaluate(
    engine: RolloutEngine,
    tokenizer: Any,
    opts: EvalOptions,
    out: Path | None = None,
    console: Console | None = None,
    meta: Mapping[str, Any] | None = None,
    grader: grading.Grader | None = None,
    samples: Mapping[str, list[Sample]] | None = None,
) -> dict[str, Any]:
    """Load (unless ``samples`` are given), generate, grade and summarize; writes
    ``results.json`` and ``samples.jsonl`` into ``out``."""
    samples = samples if samples is not None else load_samples(opts)
    if console is not None:
        console.print("benchmarks: " + ", ".join(f"{n} ({len(s)})" for n, s in samples.items()))
    if any(BENCHMARKS[name].kind == "math" for name in samples):
        grading.require_math_verify()  # before hours of generation, not after
    t0 = time.perf_counter()
    responses = generate(engine, tokenizer, samples, opts, console)
    t1 = time.perf_counter()
    if out is not None:
        # Kept before grading: responses cost hours, and a grading failure must not lose them.
        write_generations(out, responses)
    records = grade(samples, responses, opts, grader)
    t2 = time.perf_counter()
    results = summarize(records)
    settings = asdict(opts)
    settings["data_dir"] = str(opts.data_dir) if opts.data_dir else None
    results["settings"] = settings
    results["meta"] = dict(meta or {})
    results["timing"] = {"generate_s": t1 - t0, "grade_s": t2 - t1}
    if out is not None:
        write(out, results, records)
    return results


# --------------------------------------------------------------------------- compare


def load_results(folder: Path) -> dict[str, Any]:
    path = folder / "results.json" if folder.is_dir() else folder
    try:
        results = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{folder}: no readable results.json ({exc})") from exc
    benches = results.get("benchmarks") if isinstance(results, dict) else None
    if (
        not isinstance(benches, dict)
        or not isinstance(results.get("averages"), dict)
        or not all(isinstance(b, dict) and "title" in b for b in benches.values())
    ):
        raise ValueError(f"{path}: not the results.json of an azr eval (benchmarks and averages)")
    return dict(results)


def compare(
    a: Mapping[str, Any], b: Mapping[str, Any]
) -> list[tuple[str, float | None, float | None, float | None]]:
    """Rows (label, score A, score B, B - A) over the union of benchmarks, then the averages."""
    rows = []
    names = list(dict.fromkeys([*a["benchmarks"], *b["benchmarks"]]))
    for n in names:
        x, y = a["benchmarks"].get(n, {}).get("score"), b["benchmarks"].get(n, {}).get("score")
        title = (a["benchmarks"].get(n) or b["benchmarks"][n])["title"]
        rows.append((title, x, y, (y - x) if x is not None and y is not None else None))
    for key in ("code", "math", "overall", "indist"):
        x, y = a["averages"].get(key), b["averages"].get(key)
        if x is not None or y is not None:
            rows.append(
                (
                    f"{key} average" if key != "overall" else "overall",
                    x,
                    y,
                    (y - x) if x is not None and y is not None else None,
                )
            )
    return rows


def compare_chart(
    rows: Sequence[tuple[str, float | None, float | None, float | None]], labels: tuple[str, str], path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(rows)), 4.0))
    xs = range(len(rows))
    width = 0.4
    va = [r[1] if r[1] is not None else math.nan for r in rows]
    vb = [r[2] if r[2] is not None else math.nan for r in rows]
    ax.bar([x - width / 2 for x in xs], va, width, label=labels[0])
    ax.bar([x + width / 2 for x in xs], vb, width, label=labels[1])
    ax.set_xticks(list(xs))
    ax.set_xticklabels([r[0] for r in rows], rotation=30, ha="right")
    ax.set_ylabel("score (%)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
