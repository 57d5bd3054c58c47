"""Evaluation on the paper's benchmarks (SPEC §7): greedy decoding, graded in the sandbox.

``azr eval --model PATH --suite code|math|indist|all`` from the shell;
``evaluate`` from Python with any rollout engine.
"""

from azr.eval.data import BENCHMARKS, SUITES, Benchmark, Sample
from azr.eval.runner import EvalOptions, Record, compare, evaluate, grade, load_samples, summarize

__all__ = [
    "BENCHMARKS",
    "SUITES",
    "Benchmark",
    "EvalOptions",
    "Record",
    "Sample",
    "compare",
    "evaluate",
    "grade",
    "load_samples",
    "summarize",
]
