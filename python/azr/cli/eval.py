"""``azr eval``: the paper's benchmarks, greedy, graded in the sandbox."""

from __future__ import annotations

import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from azr._core import AzrError


def _sources(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for v in values:
        name, sep, source = v.partition("=")
        if not sep or not name or not source:
            raise click.BadParameter(f"{v!r} is not NAME=SOURCE", param_hint="--data")
        out[name.strip()] = source.strip()
    return out


def _compare(a: Path, b: Path, out: Path | None, console: Console) -> None:
    from azr.eval.runner import compare, compare_chart, load_results

    try:
        ra, rb = load_results(a), load_results(b)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    rows = compare(ra, rb)
    t = Table(title=f"{a} → {b}")
    for col in ("benchmark", "A", "B", "Δ"):
        t.add_column(col, justify="left" if col == "benchmark" else "right")
    for label, x, y, d in rows:
        t.add_row(
            label,
            "—" if x is None else f"{x:.1f}",
            "—" if y is None else f"{y:.1f}",
            "—" if d is None else f"{d:+.1f}",
        )
    console.print(t)
    chart = (out or Path(".")) / "compare.png"
    chart.parent.mkdir(parents=True, exist_ok=True)
    try:
        compare_chart(rows, (a.name or str(a), b.name or str(b)), chart)
    except ImportError as exc:  # the table above stands without it
        console.print(f"no chart: it needs matplotlib (pip install 'azr[eval]'): {exc}")
        return
    console.print(f"chart: {chart}")


@click.command("eval")
@click.option(
    "--model", "model_path", help="A model folder, a run checkpoint (step_N), 'tiny', package:… or a hub id."
)
@click.option(
    "--suite",
    "suites",
    multiple=True,
    default=("all",),
    show_default=True,
    help="code, math, indist, all, or a benchmark name; repeat or comma-separate.",
)
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N items of each benchmark.")
@click.option("--backend", type=click.Choice(["hf", "vllm"]), default="hf", show_default=True)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    help="Output folder (default evals/<model>-<time>).",
)
@click.option("--max-tokens", type=click.IntRange(min=1), default=8192, show_default=True)
@click.option(
    "--template",
    type=click.Choice(["r1", "chat"]),
    default="r1",
    show_default=True,
    help="Template for code and CruxEval: r1 for base models, chat for instruct models.",
)
@click.option(
    "--math-template",
    type=click.Choice(["qwen-boxed", "r1", "chat"]),
    default="qwen-boxed",
    show_default=True,
)
@click.option("--data", "data", multiple=True, help="NAME=SOURCE: a benchmark's file or hub id (repeatable).")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="A folder laid out as code/*.jsonl and math/*.jsonl.",
)
@click.option("--lcb-start", help="LiveCodeBench: problems from this date (YYYY-MM-DD).")
@click.option("--lcb-end", help="LiveCodeBench: problems before this date (YYYY-MM-DD).")
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0.1),
    default=20.0,
    show_default=True,
    help="Sandbox CPU seconds per graded program run.",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--dtype", type=click.Choice(["bfloat16", "float32"]), default="bfloat16", show_default=True)
@click.option(
    "--compare",
    "compare_dirs",
    nargs=2,
    type=click.Path(path_type=Path, exists=True),
    help="Print the deltas between two result folders and write a bar chart.",
)
def eval_command(
    model_path: str | None,
    suites: tuple[str, ...],
    limit: int | None,
    backend: str,
    out: Path | None,
    max_tokens: int,
    template: str,
    math_template: str,
    data: tuple[str, ...],
    data_dir: Path | None,
    lcb_start: str | None,
    lcb_end: str | None,
    timeout_s: float,
    batch_size: int,
    dtype: str,
    compare_dirs: tuple[Path, Path] | None,
) -> None:
    """Evaluate a model on the paper's benchmarks (greedy), or compare two evaluations."""
    console = Console()
    if compare_dirs:
        _compare(compare_dirs[0], compare_dirs[1], out, console)
        return
    if not model_path:
        raise click.UsageError("give --model (or --compare DIR_A DIR_B)")
    try:
        from azr.eval.engine import load_engine
        from azr.eval.runner import EvalOptions, evaluate, load_samples, table
    except ImportError as exc:
        raise click.ClickException(
            f"azr eval needs the training stack: pip install 'azr[train,eval]' ({exc})"
        ) from exc
    named = tuple(s.strip() for v in suites for s in v.split(",") if s.strip())
    if suites and not named:
        raise click.UsageError(f"--suite {','.join(suites)!r} names no benchmark")
    opts = EvalOptions(
        suites=named,
        limit=limit,
        max_tokens=max_tokens,
        template=template,
        math_template=math_template,
        data=_sources(data),
        data_dir=data_dir,
        lcb_start=lcb_start,
        lcb_end=lcb_end,
        timeout_s=timeout_s,
    )
    if out is None:
        stem = Path(model_path.rstrip("/")).name or "model"
        out = Path("evals") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        samples = load_samples(opts)  # a bad source fails before the model loads
        engine, tokenizer = load_engine(model_path, backend, dtype, batch_size)
        if template == "chat" and not getattr(tokenizer, "chat_template", None):
            raise click.ClickException(
                f"--template chat: the tokenizer of {model_path!r} has no chat template; use --template r1"
            )
        meta = {"model": model_path, "backend": backend}
        results = evaluate(engine, tokenizer, opts, out, console, meta=meta, samples=samples)
    except (AzrError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc
    console.print(table(results, title=f"azr eval: {model_path}"))
    console.print(f"results: {out / 'results.json'}, per-sample: {out / 'samples.jsonl'}")
