"""Collective guards: a rank that never joins or never answers is an error in
bounded time, never a hang (gloo on CPU; the NCCL path shares the code)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="needs the training stack: pip install 'azr[train]'")

from azr.distributed.guards import free_port

ROOT = Path(__file__).resolve().parents[2]

RANK = """
import sys, time
from azr.distributed.guards import CommError, close_process_group, health_check, init_process_group
rank, world, port, behaviour = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
backend = sys.argv[5] if len(sys.argv) > 5 else "gloo"
try:
    init_process_group(backend, rank, world, "127.0.0.1", port, timeout_s=30 if behaviour != "alone" else 3)
    if behaviour == "silent":
        time.sleep(20)
        sys.exit(0)
    print("took", health_check(timeout_s=3))
    close_process_group()
except CommError as exc:
    print("CommError:", exc)
    sys.exit(3)
"""


def _ranks(world: int, behaviours: list[str], backend: str = "gloo") -> list[subprocess.Popen[str]]:
    port = str(free_port())
    return [
        subprocess.Popen(
            [sys.executable, "-c", RANK, str(rank), str(world), port, b, backend],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
        )
        for rank, b in enumerate(behaviours)
    ]


def test_healthy_ranks_pass_the_check() -> None:
    for p in _ranks(2, ["ok", "ok"]):
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0 and "took" in out, out


@pytest.mark.gpu
def test_the_check_over_nccl_waits_for_the_result_on_the_gpu() -> None:
    """On NCCL the all-reduce's ``wait()`` returns once it is queued; the check reads
    the sum under its deadline (one rank: the device machine has one GPU)."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    (p,) = _ranks(1, ["ok"], backend="nccl")
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 0 and "took" in out, out


def test_a_rank_that_never_joins_is_an_error() -> None:
    start = time.monotonic()
    (p,) = _ranks(2, ["alone"])
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 3, out
    assert "did not all join" in out
    assert time.monotonic() - start < 60


def test_a_rank_that_never_answers_is_an_error() -> None:
    procs = _ranks(2, ["ok", "silent"])
    out, _ = procs[0].communicate(timeout=120)
    procs[1].kill()
    procs[1].communicate()
    assert procs[0].returncode == 3, out
    assert "waited 3 s for 2 ranks" in out
