"""Executor throughput on the CRUXEval workload in validate mode, and CPU-heavy slowdown.

Every executor validates the same (program, input) pairs the way a proposal is
validated: run f(input) twice (the determinism check), compare the two reprs,
check the repr round-trips through ast.literal_eval. Executors, all measured in
this one run:

- azr: ``Sandbox.validate_batch`` on all cores (two fresh WebAssembly
  instances with different seeds, clocks and hash secrets, plus a judge).
- official executor, faithful: what the official Absolute Zero code does per
  proposal: a ``pebble`` ProcessPool with ONE worker, one ``schedule(...,
  timeout=10)`` per program, strictly sequential, both determinism runs inside
  the same worker call, and the pool closed and recreated every training step
  (``--step-size`` programs, 64 by default: one (task type, role) batch).
  Needs ``pip install pebble``.
- warm process pool: ``concurrent.futures`` workers running ``exec``, all
  programs submitted at once (an upper bound for exec-in-a-worker executors,
  faster than the official one); one worker and one per core.
- subprocess: a fresh ``python3`` process per execution.
- bare exec: ``exec`` in this process, no isolation at all (the floor).

Also: the median latency of a trivial program in a fresh instance, and the
slowdown of CPU-heavy programs against native CPython in this process.

``python benches/sandbox_throughput.py [--limit N] [--json OUT]``
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

from azr.sandbox import Sandbox

REPO = Path(__file__).resolve().parents[1]
CRUXEVAL = (
    Path(os.environ.get("AZR_SHARED_DATA", REPO.parent / "shared" / "data")) / "eval/code/cruxeval.jsonl"
)
TIMEOUT_S = 10.0

Pair = tuple[str, str]


def _exec_once(program: str, arg: str) -> str:
    namespace: dict[str, object] = {}
    exec(program, namespace)
    return repr(eval(f"f({arg})", namespace))


def validate_unisolated(program: str, arg: str) -> bool:
    """What the official executor does per proposal, minus isolation."""
    try:
        first, second = _exec_once(program, arg), _exec_once(program, arg)
        ast.literal_eval(first)
    except Exception:
        return False
    return first == second


def bare_exec(pairs: list[Pair]) -> list[bool]:
    return [validate_unisolated(p, a) for p, a in pairs]


def official_faithful(step_size: int) -> Callable[[list[Pair]], list[bool]]:
    def run(pairs: list[Pair]) -> list[bool]:
        from concurrent.futures import TimeoutError as PebbleTimeout

        from pebble import ProcessPool

        results = []
        for start in range(0, len(pairs), step_size):
            with ProcessPool(max_workers=1) as pool:  # a new pool every step, as the official loop does
                for program, arg in pairs[start : start + step_size]:
                    future = pool.schedule(validate_unisolated, args=(program, arg), timeout=TIMEOUT_S)
                    try:
                        results.append(bool(future.result()))
                    except (PebbleTimeout, Exception):
                        results.append(False)
        return results

    return run


def official_style(workers: int) -> Callable[[list[Pair]], list[bool]]:
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


def azr(sandbox: Sandbox) -> Callable[[list[Pair]], list[bool]]:
    return lambda pairs: [r.ok for r in sandbox.validate_batch(pairs)]


def measure(fn: Callable[[list[Pair]], list[bool]], pairs: list[Pair]) -> tuple[float, int]:
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", type=int, default=800, help="CRUXEval programs to use")
    parser.add_argument(
        "--subprocess-limit", type=int, default=100, help="programs for the slow subprocess baseline"
    )
    parser.add_argument(
        "--step-size", type=int, default=64, help="programs per pool (official: one per step)"
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()

    rows = [json.loads(line) for line in CRUXEVAL.read_text().splitlines() if line.strip()][: args.limit]
    pairs = [(r["code"], r["input"]) for r in rows]
    cores = os.cpu_count() or 1
    sandbox = Sandbox(timeout_s=TIMEOUT_S)
    azr(sandbox)(pairs[:50])  # warm the pool and the judges

    executors: dict[str, tuple[Callable[[list[Pair]], list[bool]], list[Pair]]] = {
        f"azr ({cores} workers)": (azr(sandbox), pairs),
        "official executor (pebble, 1 worker, faithful)": (official_faithful(args.step_size), pairs),
        "warm process pool, 1 worker": (official_style(1), pairs),
        f"warm process pool, {cores} workers": (official_style(cores), pairs),
        "subprocess per execution": (subprocess_per_execution, pairs[: args.subprocess_limit]),
        "bare exec, no isolation (floor)": (bare_exec, pairs),
    }
    results: dict[str, object] = {"programs": len(pairs), "cores": cores, "throughput": {}}
    base = None
    print(f"CRUXEval validate mode, {len(pairs)} programs, {cores} cores")
    print(f"{'executor':<48} {'validations/s':>14} {'azr / this':>11}")
    for name, (fn, work) in executors.items():
        rate, valid = measure(fn, work)
        base = base or rate
        results["throughput"][name] = {"validations_per_s": rate, "valid": valid, "programs": len(work)}  # type: ignore[index]
        print(f"{name:<48} {rate:>14.1f} {base / rate:>10.2f}x")

    latency = fresh_instance_median_ms(sandbox)
    ratios = cpu_heavy_ratios(sandbox)
    results["fresh_instance_median_ms"] = latency
    results["cpu_heavy_slowdown_vs_native"] = ratios
    print(f"\nfresh instance, trivial program: median {latency:.3f} ms")
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
