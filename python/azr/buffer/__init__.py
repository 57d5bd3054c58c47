"""Task buffers: three lanes of validated tasks, sampled without locks.

``TaskBuffer()`` lives in memory; ``TaskBuffer.open(path)`` is durable: every
entry added before a ``flush()`` survives a crash (even SIGKILL mid-write) and
comes back exactly once on reopen. Records are JSON objects (dicts); task types
are ``TaskType`` members or the strings "deduction", "abduction", "induction".
Every call that can take time releases the GIL.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from os import PathLike
from typing import Any

from azr._core import BufferError
from azr._core import TaskBuffer as _CoreBuffer
from azr.tasks.types import TaskType

__all__ = ["BufferError", "Entry", "TaskBuffer", "TaskType"]

TaskLike = TaskType | str


@dataclass(frozen=True)
class Entry:
    """A stored record with the step it entered and its stable id."""

    id: int
    step: int
    record: dict[str, Any]


def _name(task_type: TaskLike) -> str:
    return task_type.value if isinstance(task_type, TaskType) else str(task_type)


def _records(rows: Iterable[tuple[int, int, str]]) -> list[dict[str, Any]]:
    return [json.loads(text) for _, _, text in rows]


def _encode(record: dict[str, Any]) -> str:
    if not isinstance(record, dict):
        raise BufferError(f"a record must be a dict, got {type(record).__name__}")
    try:
        return json.dumps(record, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise BufferError(f"record is not JSON: {exc}") from exc


class TaskBuffer:
    """Deduplicated deduction, abduction and induction buffers.

    Args:
        capacity: most live entries per task type; ``None`` keeps everything.
        eviction: what a full lane drops, ``"fifo"`` (the oldest) or
            ``"reservoir"`` (a uniform sample of all ever added); counted in ``stats()``.
        dedup: refuse entries whose normalized (program, input[s]) is already live.
        seed: seed of reservoir eviction.
    """

    def __init__(
        self, *, capacity: int | None = None, eviction: str = "fifo", dedup: bool = True, seed: int = 0
    ) -> None:
        self._core = _CoreBuffer(capacity=capacity, eviction=eviction, dedup=dedup, seed=seed)

    @classmethod
    def open(
        cls,
        path: str | PathLike[str],
        *,
        capacity: int | None = None,
        eviction: str = "fifo",
        dedup: bool = True,
        seed: int = 0,
    ) -> TaskBuffer:
        """Open (or create) a durable buffer in the folder ``path``.

        The folder keeps the settings it was written with: other ones are
        refused while its log holds entries (replaying the log depends on
        them); after ``compact()`` they apply from then on."""
        core = _CoreBuffer.open(path, capacity=capacity, eviction=eviction, dedup=dedup, seed=seed)
        return cls._wrap(core, path)

    @classmethod
    def open_existing(cls, path: str | PathLike[str]) -> TaskBuffer:
        """Open the durable buffer in ``path`` with the settings it was written with."""
        return cls._wrap(_CoreBuffer.open_existing(path), path)

    @classmethod
    def salvage(cls, path: str | PathLike[str]) -> TaskBuffer:
        """Open a damaged durable buffer (one ``open`` refuses as corrupt) with every
        entry that can still be read; each damaged file is kept beside as
        ``NAME.damaged`` and the buffer is compacted, so it opens normally from
        then on. ``stats()["recovery"]`` says what was lost."""
        return cls._wrap(_CoreBuffer.salvage(path), path)

    @classmethod
    def _wrap(cls, core: _CoreBuffer, path: str | PathLike[str]) -> TaskBuffer:
        buffer = cls.__new__(cls)
        buffer._core = core
        recovery = buffer._core.stats()["recovery"]
        if recovery["torn_bytes"] and not recovery["damaged_files"]:  # salvage reports its own losses
            warnings.warn(
                f"{path}: dropped a half-written record at the end of the log "
                f"({recovery['torn_bytes']} bytes: {recovery['torn_reason']}); every flushed entry is intact",
                RuntimeWarning,
                stacklevel=2,
            )
        return buffer

    def add(self, task_type: TaskLike, record: dict[str, Any], step: int) -> bool:
        """Add one record; whether it is stored (False for a duplicate, or for a
        newcomer that a full reservoir passes over)."""
        return self._core.add_many([(_name(task_type), _encode(record), step)])[0]

    def add_many(self, items: Sequence[tuple[TaskLike, dict[str, Any], int]]) -> list[bool]:
        """Add many ``(task_type, record, step)`` at once; one bool each (as ``add``), in order."""
        return self._core.add_many([(_name(t), _encode(r), s) for t, r, s in items])

    def flush(self) -> None:
        """Make everything added so far durable (one fsync shared by concurrent callers)."""
        self._core.flush()

    def compact(self) -> None:
        """Rewrite the live entries as a snapshot and start a fresh log."""
        self._core.compact()

    def __len__(self) -> int:
        return len(self._core)

    def count(self, task_type: TaskLike) -> int:
        return self._core.count(_name(task_type))

    def sample(self, task_type: TaskLike, k: int, seed: int | None = None) -> list[dict[str, Any]]:
        """``k`` distinct records drawn uniformly (fewer if the lane is smaller)."""
        return _records(self._core.sample(_name(task_type), k, seed))

    def recent(self, task_type: TaskLike, since_step: int) -> list[dict[str, Any]]:
        """Records that entered at ``since_step`` or later, oldest first."""
        return _records(self._core.recent(_name(task_type), since_step))

    def solver_batch(
        self, task_type: TaskLike, n: int, since_step: int, seed: int | None = None
    ) -> list[dict[str, Any]]:
        """The "max_new" batch: recent records first, filled to ``n`` from the whole lane."""
        return _records(self._core.solver_batch(_name(task_type), n, since_step, seed))

    def sample_union(
        self,
        task_types: Sequence[TaskLike],
        k: int,
        seed: int | None = None,
        weights: Sequence[float] | None = None,
    ) -> list[tuple[TaskType, dict[str, Any]]]:
        """``k`` distinct records from several lanes (each entry equally likely, or by type weight)."""
        rows = self._core.sample_union(
            [_name(t) for t in task_types], k, seed, None if weights is None else list(weights)
        )
        return [(TaskType(t), json.loads(text)) for t, (_, _, text) in rows]

    def entries(self, task_type: TaskLike) -> list[Entry]:
        """Every live entry of a lane with its id and step."""
        return [Entry(i, s, json.loads(t)) for i, s, t in self._core.entries(_name(task_type))]

    def stats(self) -> dict[str, Any]:
        """Counters per task type and in total (live, added, duplicates, evicted), and the config."""
        return self._core.stats()

    def export_jsonl(self, path: str | PathLike[str]) -> int:
        return self._core.export_jsonl(path)

    def import_jsonl(self, path: str | PathLike[str]) -> tuple[int, int]:
        """Add the entries of a JSON-lines export; returns (added, duplicates)."""
        return self._core.import_jsonl(path)
