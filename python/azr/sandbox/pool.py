"""The sandbox's batch methods over worker *processes* (``ProcessSandbox``).

A ``Sandbox`` runs its workers as threads of one process, which share page
tables: every copy-on-write fault or decommit on one core interrupts the
others to flush their TLBs. With Wasmtime as published, fresh instances
faulted pages in constantly and two threads validated no faster than one on a
2-core VM (2 threads 174 programs/s, 1 worker 203, 2 processes 381). With the
patched memory reset in ``third_party/`` a warm instance slot takes no faults
and threads scale too (2 threads 582-688, 2 processes 695-718, 1 worker
329-379; README). Processes stay the training default: never slower, and a
worker that dies takes only its own process.

``ProcessSandbox`` keeps one single-threaded ``Sandbox`` per process and
splits each batch into chunks; results come back in order as plain
dataclasses with the attributes of ``ExecResult`` and ``Verdict``. Results
cross process boundaries the same way for the Ray driver's sandbox actors.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from azr._core import Sandbox


class _Wedged(Exception):
    """No worker process finished a chunk within its budget."""


@dataclass(frozen=True)
class RemoteError:
    kind: str
    message: str


@dataclass(frozen=True)
class RemoteResult:
    """An ``ExecResult`` that crossed a process boundary (same attributes)."""

    ok: bool
    output: str | None
    error: RemoteError | None
    stdout: str
    elapsed_ms: float


@dataclass(frozen=True)
class RemoteVerdict:
    """A ``Verdict`` that crossed a process boundary (same attributes)."""

    correct: bool
    error: RemoteError | None
    output: str | None
    elapsed_ms: float


def _error(d: dict[str, Any] | None) -> RemoteError | None:
    return RemoteError(d["kind"], d["message"]) if d else None


def to_result(d: dict[str, Any]) -> RemoteResult:
    return RemoteResult(d["ok"], d["output"], _error(d["error"]), d["stdout"], d["elapsed_ms"])


def to_verdict(d: dict[str, Any]) -> RemoteVerdict:
    return RemoteVerdict(d["correct"], _error(d["error"]), d["output"], d["elapsed_ms"])


_WORKER: Sandbox | None = None


def _start(options: dict[str, Any]) -> None:
    global _WORKER
    # Ctrl-C reaches the whole process group; the parent decides when to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER = Sandbox(**options, workers=1)


def call(sandbox: Sandbox, method: str, items: list[Any]) -> list[dict[str, Any]]:
    """Run one of ``sandbox``'s batch methods, results as plain dicts (to cross a process boundary)."""
    return [r.to_dict() for r in getattr(sandbox, method)(items)]


def _call(method: str, items: list[Any]) -> list[dict[str, Any]]:
    assert _WORKER is not None, "the worker process was not initialized"
    return call(_WORKER, method, items)


class RemoteSandbox:
    """The batch methods of ``Sandbox`` the loop uses, for sandboxes in other
    processes; a subclass says how a batch reaches them (``_map``)."""

    def _map(self, method: str, items: Sequence[Any]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def validate_batch(self, items: Sequence[tuple[str, str]]) -> list[RemoteResult]:
        return [to_result(d) for d in self._map("validate_batch", items)]

    def shape_batch(self, items: Sequence[tuple[str, str]]) -> list[RemoteResult]:
        return [to_result(d) for d in self._map("shape_batch", items)]

    def run_batch(self, items: Sequence[tuple[str, str]]) -> list[RemoteResult]:
        return [to_result(d) for d in self._map("run_batch", items)]

    def run_script_batch(self, codes: Sequence[str]) -> list[RemoteResult]:
        return [to_result(d) for d in self._map("run_script_batch", codes)]

    def check_deduction_batch(self, items: Sequence[tuple[str, str]]) -> list[RemoteVerdict]:
        return [to_verdict(d) for d in self._map("check_deduction_batch", items)]

    def check_abduction_batch(self, items: Sequence[tuple[str, str, str]]) -> list[RemoteVerdict]:
        return [to_verdict(d) for d in self._map("check_abduction_batch", items)]

    def check_induction_batch(self, items: Sequence[tuple[str, list[str], list[str]]]) -> list[RemoteVerdict]:
        return [to_verdict(d) for d in self._map("check_induction_batch", items)]


class ProcessSandbox(RemoteSandbox):
    """``Sandbox``'s batch methods, run by ``processes`` worker processes.

    Args:
        timeout_s, memory_mb, max_output_chars: as ``Sandbox``.
        processes: worker processes; 0 means one per core.
        chunk: items sent to a process at a time (small chunks balance the load).
    """

    def __init__(
        self,
        timeout_s: float = 10.0,
        memory_mb: int = 256,
        processes: int = 0,
        max_output_chars: int = 10_000,
        chunk: int = 8,
        slack_s: float = 60.0,
    ) -> None:
        self.processes = processes or os.cpu_count() or 1
        self.chunk = max(1, chunk)
        self.timeout_s = timeout_s
        self.slack_s = slack_s
        self._options: dict[str, Any] = {
            "timeout_s": timeout_s,
            "memory_mb": memory_mb,
            "max_output_chars": max_output_chars,
        }
        Sandbox(**self._options, workers=1)  # bad settings fail here, in the caller's process
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn: the caller may hold threads (a Sandbox's, torch's), which fork would copy half-alive.
        return ProcessPoolExecutor(
            self.processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start,
            initargs=(self._options,),
        )

    def _restart(self) -> None:
        """Replace the worker processes, killing any that still run (a stopped
        or wedged one would otherwise keep the old pool's shutdown waiting)."""
        old = self._pool
        self._pool = self._new_pool()
        for process in list(getattr(old, "_processes", {}).values()):
            process.kill()
        old.shutdown(wait=False, cancel_futures=True)

    def _budget(self, method: str, items: Sequence[Any]) -> float:
        """The longest ``items`` can take in a healthy worker, plus slack: each
        sandbox call (judge, run) stops by its wall-clock backstop (2T + 1 s),
        a validation makes 4 and an induction check one per input plus 2."""
        wall = 2 * self.timeout_s + 1
        calls = sum(len(item[1]) + 2 if method == "check_induction_batch" else 4 for item in items)
        return calls * wall + self.slack_s

    def _map(self, method: str, items: Sequence[Any]) -> list[dict[str, Any]]:
        items = list(items)
        if not items:
            return []
        parts = [items[i : i + self.chunk] for i in range(0, len(items), self.chunk)]
        done: dict[int, list[dict[str, Any]]] = {}
        try:
            self._run_parts(method, parts, done)
        except (BrokenProcessPool, _Wedged):
            # A worker process died (killed from outside, or by a job) or stopped
            # answering. Start fresh and run what is left as single items, in
            # parallel; if that breaks too, the items it caught run one at a
            # time, so that a job that kills its worker gets its own verdict.
            self._restart()
            left = [(i, k) for i, part in enumerate(parts) if i not in done for k in range(len(part))]
            singles = [[parts[i][k]] for i, k in left]
            got: dict[int, list[dict[str, Any]]] = {}
            try:
                self._run_parts(method, singles, got)
            except (BrokenProcessPool, _Wedged):
                self._restart()
            for j, (i, k) in enumerate(left):
                one = got[j][0] if j in got else self._one(method, parts[i][k])
                done.setdefault(i, [{} for _ in parts[i]])[k] = one
        return [d for i in range(len(parts)) for d in done[i]]

    def _run_parts(self, method: str, parts: list[list[Any]], done: dict[int, list[dict[str, Any]]]) -> None:
        futures = {self._pool.submit(_call, method, part): i for i, part in enumerate(parts)}
        patience = max(self._budget(method, part) for part in parts)
        pending = set(futures)
        broken: BaseException | None = None
        while pending:
            finished, pending = wait(pending, timeout=patience, return_when=FIRST_COMPLETED)
            if not finished:
                raise _Wedged
            for future in finished:
                try:
                    done[futures[future]] = future.result()
                except BrokenProcessPool as exc:
                    broken = exc
            if broken is not None:
                raise broken

    def _one(self, method: str, item: Any) -> dict[str, Any]:
        """One item in the current pool, twice at most (a worker killed from
        outside is not the job's fault); a job that breaks both gets a failure."""
        for _ in range(2):
            try:
                future = self._pool.submit(_call, method, [item])
                return future.result(timeout=self._budget(method, [item]))[0]
            except (BrokenProcessPool, FutureTimeout):
                self._restart()
        message = (
            f"the sandbox worker process died or stopped answering twice while running this job ({method})"
        )
        error = {"kind": "runtime", "message": message}
        if method.startswith("check_"):
            return {"correct": False, "error": error, "output": None, "elapsed_ms": 0.0}
        return {"ok": False, "output": None, "error": error, "stdout": "", "elapsed_ms": 0.0}

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ProcessSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
