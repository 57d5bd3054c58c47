"""Executor throughput on the CRUXEval workload in validate mode, and CPU-heavy slowdown.

Every executor validates the same (program, input) pairs the way a proposal is
validated: run f(input) twice (the determinism check), compare the results,
check the output round-trips through ast.literal_eval. Executors, all measured
in this one run:

- azr: ``Sandbox.validate_batch`` on all cores (two fresh WebAssembly
  instances with different seeds, clocks and hash secrets, plus a judge), and
  on one worker thread, which shows how far the worker threads scale.
- official executor, faithful: a model of the official Absolute Zero Reasoner
  executor (``PythonExecutor.check_all`` with the determinism check, as its
  self-play trainer calls it for every proposal), written from reading its
  code. In the parent: a banned-import AST check, the program wrapped in a
  template that calls f(input) twice and raises unless the two results are
  equal, then ``ast.parse`` of the whole. Then ONE call to a ``pebble``
  ProcessPool with ONE worker (``pool.map(fn, [snippet], timeout=10)``, the
  function a ``functools.partial`` carrying a runtime object, pickled with
  every call), strictly sequential; in the worker, ``exec`` of all but the
  last line and ``eval`` of the last (``repr(result)``), each under a SIGALRM
  timeout, then ``str`` and ``pickle`` checks on the result. Back in the
  parent: strip, truncate to 400 characters, the status checked for "error",
  and (here) the output checked with ``ast.literal_eval``. The official
  trainer closes the pool and makes a new one once per training step
  (``executor_cleanup_frequency: 1``); one step (batch 64, code_i, code_o and
  code_f tasks, 10 inputs per code_f proposal, 8 rollouts per proposal for
  learnability, then the solver's checks) makes on the order of a thousand
  executor calls, so the pool lives ``--step-size`` calls, 1000 by default.
  A second row recreates it every 64 calls (one pool per batch of proposals),
  a pessimistic model shown for the sensitivity: pool teardown alone costs
  tens of milliseconds. Needs ``pip install 'pebble==5.2.3'`` (not a project
  dependency); without it those rows are skipped with a note.
- warm process pool: ``concurrent.futures`` workers running ``exec``, all
  programs submitted at once: an upper bound for executors that exec in a
  warm worker, faster than the official one; one worker and one per core.
- subprocess: a fresh ``python3`` process per execution.
- bare exec: ``exec`` in this process, no isolation at all (the floor).

The figure the project's target ("at least 2x the official single worker") is
judged on is azr against the faithful official executor at ``--step-size``.

Also: pebble's per-call latency and pool turnover cost, the median latency of
a trivial program in a fresh azr instance, and the slowdown of CPU-heavy
programs against native CPython in this process.

``python benches/sandbox_throughput.py [--limit N] [--step-size N] [--json OUT]``
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import pickle
import re
import signal
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

from azr.sandbox import Sandbox

REPO = Path(__file__).resolve().parents[1]
CRUXEVAL = (
    Path(os.environ.get("AZR_SHARED_DATA", REPO.parent / "shared" / "data")) / "eval/code/cruxeval.jsonl"
)
TIMEOUT_S = 10.0

Pair = tuple[str, str]
Executor = Callable[[list[Pair]], list[bool]]


def _exec_once(program: str, arg: str) -> str:
    namespace: dict[str, object] = {}
    exec(program, namespace)
    return repr(eval(f"f({arg})", namespace))


def validate_unisolated(program: str, arg: str) -> bool:
    """Validate mode with no isolation: two runs, equal reprs, a literal output."""
    try:
        first, second = _exec_once(program, arg), _exec_once(program, arg)
        ast.literal_eval(first)
    except Exception:
        return False
    return first == second


def bare_exec(pairs: list[Pair]) -> list[bool]:
    return [validate_unisolated(p, a) for p, a in pairs]


# --- the official executor, modelled ------------------------------------------

# The official configuration's banned words, matched against each dotted
# component of an imported name.
OFFICIAL_BANNED = frozenset(
    "logging random multiprocessing pebble subprocess threading".split()
    + "datetime time hashlib hmac bcrypt calendar".split()
)
TWICE_AND_COMPARE = (
    "{program}\n"
    "_first = f({arg})\n"
    "if _first != f({arg}):\n"
    "    raise Exception('not deterministic')\n"
    "repr(_first)"
)
INPUT_CALL = re.compile(r"(\s|^)?input\(")


def _imports_banned(program: str) -> bool:
    try:
        tree = ast.parse(program)
    except SyntaxError:
        return False  # the template's own parse rejects it
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] + [alias.name for alias in node.names]
        if any(part in OFFICIAL_BANNED for name in names for part in name.split(".")):
            return True
    return False


class _Runtime:
    """The state the official executor sends with every call: a globals dict."""

    def __init__(self) -> None:
        self.globals: dict[str, Any] = {}


def _under_alarm(seconds: float, fn: Callable[..., Any], *args: Any) -> Any:
    def expire(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError("timed out")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn(*args)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _official_worker(lines: list[str], runtime: _Runtime, timeout_s: float) -> tuple[Any, str]:
    """Runs in the pebble worker: exec all lines but the last, eval the last."""
    try:
        body = "\n".join(lines[:-1])
        if INPUT_CALL.search(body):
            raise RuntimeError("input() refused")
        _under_alarm(timeout_s, exec, body, runtime.globals)
        result = _under_alarm(timeout_s, eval, lines[-1], runtime.globals)
        str(result)
        pickle.dumps(result)
        return result, "Done"
    except BaseException:
        return "", traceback.format_exc().split("\n")[-2]


def _truncate(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[: limit // 2] + "..." + text[-limit // 2 :]


def _official_call(pool: Any, runtime: _Runtime, snippet: str) -> tuple[str, str]:
    """One ``apply``: a one-element ``map`` on the pool, with the per-call timeout."""
    fn = partial(_official_worker, runtime=runtime, timeout_s=TIMEOUT_S)
    try:
        output, status = next(pool.map(fn, [snippet.strip().split("\n")], timeout=TIMEOUT_S).result())
    except FutureTimeout:
        output, status = "", "Timeout Error"
    except Exception as error:  # the worker died, or the result could not be sent back
        output, status = "", f"Error: {error}"
    return _truncate(str(output).strip()), _truncate(str(status).strip())


def official_faithful(step_size: int) -> Executor:
    def run(pairs: list[Pair]) -> list[bool]:
        from pebble import ProcessPool

        runtime, pool, results = _Runtime(), None, []
        for index, (program, arg) in enumerate(pairs):
            if index % step_size == 0 and pool is not None:  # the trainer's per-step cleanup
                pool.close()
                pool.join()
                pool = None
            if _imports_banned(program):
                results.append(False)
                continue
            snippet = TWICE_AND_COMPARE.format(program=program, arg=arg)
            try:
                ast.parse(snippet)
            except SyntaxError:
                results.append(False)
                continue
            if pool is None:
                pool = ProcessPool(max_workers=1)
            output, status = _official_call(pool, runtime, snippet)
            ok = "error" not in status.lower()
            if ok:
                try:
                    ast.literal_eval(output)
                except Exception:
                    ok = False
            results.append(ok)
        if pool is not None:
            pool.close()
            pool.join()
        return results

    return run


def official_overheads(calls: int = 200, pools: int = 5) -> dict[str, float]:
    """pebble's cost alone: one trivial call on a warm pool, and one pool's turnover."""
    from pebble import ProcessPool

    runtime, snippet = _Runtime(), "def f(x):\n    return x\nrepr(f(1))"
    with ProcessPool(max_workers=1) as pool:
        _official_call(pool, runtime, snippet)
        latencies = []
        for _ in range(calls):
            start = time.perf_counter()
            _official_call(pool, runtime, snippet)
            latencies.append(time.perf_counter() - start)
    turnovers = []
    for _ in range(pools):
        start = time.perf_counter()
        pool = ProcessPool(max_workers=1)
        _official_call(pool, runtime, snippet)
        pool.close()
        pool.join()
        turnovers.append(time.perf_counter() - start - statistics.median(latencies))
    return {
        "warm_call_median_ms": statistics.median(latencies) * 1e3,
        "pool_turnover_median_ms": statistics.median(turnovers) * 1e3,
    }


# --- the other executors --------------------------------------------------------


def warm_pool(workers: int) -> Executor:
    def run(pairs: list[Pair]) -> list[bool]:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(validate_unisolated, p, a) for p, a in pairs]
            results = []
            for future in futures:
                try:
                    results.append(future.result(timeout=TIMEOUT_S))
                except FutureTimeout:
                    results.append(False)
            return results

    return run


RUNNER = (
    "import sys, json\nreq = json.load(sys.stdin)\nns = {}\n"
    "exec(req['p'], ns)\nprint(repr(eval('f(' + req['a'] + ')', ns)))"
)


def subprocess_per_execution(pairs: list[Pair]) -> list[bool]:
    results = []
    for program, arg in pairs:
        outs = []
        for _ in range(2):
            proc = subprocess.run(
                [sys.executable, "-c", RUNNER],
                input=json.dumps({"p": program, "a": arg}),
                capture_output=True,
                text=True,
                timeout=TIMEOUT_S,
            )
            outs.append(proc.stdout if proc.returncode == 0 else None)
        results.append(outs[0] is not None and outs[0] == outs[1])
    return results


def azr(sandbox: Sandbox) -> Executor:
    return lambda pairs: [r.ok for r in sandbox.validate_batch(pairs)]


def azr_processes(processes: int) -> tuple[Executor, Callable[[], None]]:
    """azr's ProcessSandbox: one single-threaded sandbox per worker process."""
    from azr.sandbox.pool import ProcessSandbox

    pool = ProcessSandbox(timeout_s=TIMEOUT_S, processes=processes)
    return (lambda pairs: [r.ok for r in pool.validate_batch(pairs)]), pool.close


def measure(fn: Executor, pairs: list[Pair]) -> tuple[float, int]:
    start = time.perf_counter()
    valid = sum(fn(pairs))
    return len(pairs) / (time.perf_counter() - start), valid


CPU_HEAVY = {
    "loop": ("def f(n):\n    s = 0\n    for i in range(n):\n        s += i * i % 7\n    return s", "1000000"),
    "strings": ("def f(n):\n    return len(''.join(str(i)[::-1].upper() for i in range(n)))", "200000"),
    "dict": (
        "def f(n):\n    d = {}\n    for i in range(n):\n"
        "        d[i % 1000] = d.get(i % 1000, 0) + i\n    return len(d)",
        "300000",
    ),
    "sort": (
        "def f(n):\n    l = [(i * 7919) % 100003 for i in range(n)]\n    l.sort()\n    return l[n // 2]",
        "300000",
    ),
}


def cpu_heavy_ratios(sandbox: Sandbox) -> dict[str, float]:
    ratios = {}
    for name, (program, arg) in CPU_HEAVY.items():
        native = min(_timed(_exec_once, program, arg) for _ in range(3))
        wasm = min(sandbox.run(program, arg).elapsed_ms / 1e3 for _ in range(3))
        ratios[name] = wasm / native
    return ratios


def _timed(fn: Callable[[str, str], object], program: str, arg: str) -> float:
    start = time.perf_counter()
    fn(program, arg)
    return time.perf_counter() - start


def fresh_instance_median_ms(sandbox: Sandbox, runs: int = 500) -> float:
    return statistics.median(sandbox.run("def f(x):\n    return x + 1", "1").elapsed_ms for _ in range(runs))


def _have_pebble() -> bool:
    try:
        import pebble  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", type=int, default=800, help="CRUXEval programs to use")
    parser.add_argument(
        "--subprocess-limit", type=int, default=100, help="programs for the slow subprocess baseline"
    )
    parser.add_argument(
        "--official-limit", type=int, help="programs for the official executor rows (default: all)"
    )
    parser.add_argument(
        "--step-size",
        type=int,
        default=1000,
        help="executor calls per official pool (one training step); default 1000",
    )
    parser.add_argument(
        "--pessimistic-step-size",
        type=int,
        default=64,
        help="calls per pool for the pessimistic official row; default 64",
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()

    rows = [json.loads(line) for line in CRUXEVAL.read_text().splitlines() if line.strip()][: args.limit]
    pairs = [(r["code"], r["input"]) for r in rows]
    official_pairs = pairs[: args.official_limit] if args.official_limit else pairs
    cores = os.cpu_count() or 1
    sandbox = Sandbox(timeout_s=TIMEOUT_S)
    azr(sandbox)(pairs[:50])  # warm the pool and the judges
    one_worker = Sandbox(timeout_s=TIMEOUT_S, workers=1)
    azr(one_worker)(pairs[:50])

    in_processes, close_processes = azr_processes(cores)
    in_processes(pairs[: 50 * cores])  # start and warm every process

    official = f"official, faithful (pebble, 1 worker, pool per {args.step_size} calls)"
    headline = f"azr ProcessSandbox ({cores} processes, the training default)"
    executors: dict[str, tuple[Executor, list[Pair]]] = {
        headline: (in_processes, pairs),
        f"azr Sandbox ({cores} worker threads)": (azr(sandbox), pairs),
        "azr Sandbox (1 worker)": (azr(one_worker), pairs),
    }
    if _have_pebble():
        executors[official] = (official_faithful(args.step_size), official_pairs)
        executors[f"official, pessimistic (pool per {args.pessimistic_step_size} calls)"] = (
            official_faithful(args.pessimistic_step_size),
            official_pairs,
        )
    else:
        print("pebble is not installed: pip install 'pebble==5.2.3' for the official executor rows\n")
    executors |= {
        "warm process pool, 1 worker (exec upper bound)": (warm_pool(1), pairs),
        f"warm process pool, {cores} workers (exec upper bound)": (warm_pool(cores), pairs),
        "subprocess per execution": (subprocess_per_execution, pairs[: args.subprocess_limit]),
        "bare exec, no isolation (floor)": (bare_exec, pairs),
    }
    results: dict[str, Any] = {"programs": len(pairs), "cores": cores, "step_size": args.step_size}
    throughput: dict[str, dict[str, float]] = {}
    print(f"CRUXEval validate mode, {len(pairs)} programs, {cores} cores")
    print(f"{'executor':<62} {'programs':>8} {'valid':>6} {'programs/s':>11} {'azr / this':>11}")
    for name, (fn, work) in executors.items():
        rate, valid = measure(fn, work)
        throughput[name] = {"programs_per_s": rate, "valid": valid, "programs": len(work)}
        base = throughput[headline]["programs_per_s"]
        print(f"{name:<62} {len(work):>8} {valid:>6} {rate:>11.1f} {base / rate:>10.2f}x")
    results["throughput"] = throughput
    close_processes()

    if official in throughput:
        ratio = throughput[headline]["programs_per_s"] / throughput[official]["programs_per_s"]
        overheads = official_overheads()
        results["azr_over_official"] = ratio
        results["official_overheads"] = overheads
        print(f"\nazr / official (faithful, pool per {args.step_size} calls): {ratio:.2f}x (target: 2x)")
        print(
            f"pebble alone: {overheads['warm_call_median_ms']:.2f} ms per trivial call on a warm pool, "
            f"{overheads['pool_turnover_median_ms']:.1f} ms per pool (create, first call, close, join)"
        )

    latency = fresh_instance_median_ms(sandbox)
    ratios = cpu_heavy_ratios(sandbox)
    results["fresh_instance_median_ms"] = latency
    results["cpu_heavy_slowdown_vs_native"] = ratios
    print(f"\nazr fresh instance, trivial program: median {latency:.3f} ms")
    print(
        "CPU-heavy slowdown vs native CPython "
        + sys.version.split()[0]
        + ": "
        + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items())
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
