"""The Python TaskBuffer: dict records, enums and strings, durability, threads, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import azr
import pytest
from azr._core import task_types
from azr.buffer import BufferError, TaskBuffer
from azr.tasks import TaskType


def rec(i: int, **extra: object) -> dict[str, object]:
    return {"program": f"def f(a):\n    return a + {i}", "input": "1", "output": str(i + 1), **extra}


def test_records_round_trip_as_dicts() -> None:
    buf = TaskBuffer()
    record = {"program": "def f(a):\n    return a", "input": "'é'", "nested": {"k": [1, 2.5, None, True]}}
    assert buf.add(TaskType.DEDUCTION, record, 0)
    assert buf.sample("deduction", 1, seed=0) == [record]
    assert buf.entries(TaskType.DEDUCTION)[0].record == record


def test_enums_and_strings_name_the_same_lane() -> None:
    assert [t.value for t in TaskType] == task_types()
    buf = TaskBuffer()
    buf.add(TaskType.ABDUCTION, rec(1), 0)
    buf.add("abduction", rec(2), 0)
    assert buf.count(TaskType.ABDUCTION) == buf.count("abduction") == 2
    assert len(buf) == 2


def test_duplicates_return_false_and_are_counted() -> None:
    buf = TaskBuffer()
    assert buf.add_many([("deduction", rec(1), 0), ("deduction", rec(1), 0), ("induction", rec(1), 0)]) == [
        True,
        False,
        True,
    ]
    assert buf.stats()["deduction"]["duplicates"] == 1
    assert TaskBuffer(dedup=False).add_many([("deduction", rec(1), 0)] * 2) == [True, True]


def test_sampling_windows_and_batches() -> None:
    buf = TaskBuffer()
    buf.add_many([("deduction", rec(i), i // 10) for i in range(40)])
    draw = buf.sample("deduction", 6, seed=3)
    assert len(draw) == 6 and len({d["output"] for d in draw}) == 6
    assert draw == buf.sample("deduction", 6, seed=3)
    assert [r["output"] for r in buf.recent("deduction", 3)] == [str(i + 1) for i in range(30, 40)]
    batch = buf.solver_batch("deduction", 16, since_step=3, seed=1)
    recent = {r["output"] for r in buf.recent("deduction", 3)}
    assert len(batch) == 16 and recent <= {r["output"] for r in batch}
    union = buf.sample_union(["deduction", "abduction"], 5, seed=2)
    assert all(t is TaskType.DEDUCTION for t, _ in union)


def test_capacity_evicts_explicitly() -> None:
    buf = TaskBuffer(capacity=5, eviction="fifo")
    buf.add_many([("deduction", rec(i), 0) for i in range(12)])
    stats = buf.stats()["deduction"]
    assert (stats["live"], stats["added"], stats["evicted"]) == (5, 12, 7)
    reservoir = TaskBuffer(capacity=5, eviction="reservoir", seed=1)
    reservoir.add_many([("deduction", rec(i), 0) for i in range(12)])
    assert reservoir.stats()["deduction"]["evicted"] == 7
    with pytest.raises(azr.ConfigError):
        TaskBuffer(eviction="lru")
    with pytest.raises(azr.ConfigError):
        TaskBuffer(capacity=0)


@pytest.mark.parametrize(
    ("task_type", "record", "message"),
    [
        ("deductoin", rec(1), "unknown task type"),
        ("deduction", [1, 2], "must be a dict"),
        ("deduction", {"x": {1, 2}}, "not JSON"),
        ("deduction", {"x": float("nan")}, "not JSON"),
    ],
)
def test_bad_input_is_a_buffer_error(task_type: str, record: object, message: str) -> None:
    with pytest.raises(BufferError, match=message):
        TaskBuffer().add(task_type, record, 0)  # type: ignore[arg-type]


def test_durable_buffer_reopens_with_everything_flushed(tmp_path: Path) -> None:
    buf = TaskBuffer.open(tmp_path / "buf")
    buf.add_many([("induction", rec(i), i) for i in range(20)])
    buf.flush()
    buf.compact()
    buf.add("deduction", rec(99), 21)
    buf.flush()
    del buf
    again = TaskBuffer.open(tmp_path / "buf")
    assert again.count("induction") == 20 and again.count("deduction") == 1
    assert again.stats()["path"] == str(tmp_path / "buf")


def test_a_second_owner_is_refused(tmp_path: Path) -> None:
    first = TaskBuffer.open(tmp_path)
    with pytest.raises(BufferError, match="another process"):
        TaskBuffer.open(tmp_path)
    del first


def test_torn_tail_warns_and_keeps_flushed_entries(tmp_path: Path) -> None:
    buf = TaskBuffer.open(tmp_path)
    buf.add_many([("deduction", rec(i), 0) for i in range(5)])
    buf.flush()
    del buf
    log = tmp_path / "wal-00000000.log"
    with log.open("ab") as f:
        f.write(b"\x40\x00\x00\x00garbage")
    with pytest.warns(RuntimeWarning, match="half-written"):
        again = TaskBuffer.open(tmp_path)
    assert again.count("deduction") == 5


def test_unusable_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BufferError, match="file"):
        TaskBuffer.open(blocker / "buf")


def test_threads_add_and_sample_at_once() -> None:
    buf = TaskBuffer()
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                draw = buf.sample("deduction", 6)
                assert len({d["output"] for d in draw}) == len(draw)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    def writer(w: int) -> None:
        for i in range(500):
            buf.add("deduction", rec(w * 1000 + i), i)

    readers = [threading.Thread(target=reader) for _ in range(3)]
    writers = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert errors == []
    assert buf.count("deduction") == 2000


CHILD = textwrap.dedent(
    """
    import sys
    from azr.buffer import TaskBuffer
    buf = TaskBuffer.open(sys.argv[1])
    i = int(sys.argv[2])
    while True:
        program = "def f(a):\\n    return a"
        items = [("abduction", {"program": program, "input": str(j)}, 0) for j in range(i, i + 5)]
        buf.add_many(items)
        buf.flush()
        i += 5
        print(i, flush=True)
    """
)


def test_sigkill_from_python_loses_nothing_flushed(tmp_path: Path) -> None:
    start = 0
    for round_ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path), str(start)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        acked = start
        deadline = time.monotonic() + 30
        while acked < start + 50 and time.monotonic() < deadline:
            acked = int(proc.stdout.readline())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        buf = TaskBuffer.open(tmp_path)
        inputs = [e.record["input"] for e in buf.entries("abduction")]
        assert len(inputs) == len(set(inputs)), f"round {round_}: an entry came back twice"
        assert {str(j) for j in range(acked)} <= set(inputs), f"round {round_}: flushed entries lost"
        start = len(inputs)
        del buf


def test_stats_are_json_ready() -> None:
    buf = TaskBuffer(capacity=3)
    buf.add("deduction", rec(1), 0)
    stats = json.loads(json.dumps(buf.stats()))
    assert stats["total"]["live"] == 1 and stats["capacity"] == 3 and stats["path"] is None


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="uses Linux's sysfs, which refuses even root"
)
def test_folder_without_permission_is_a_clear_error() -> None:
    with pytest.raises(BufferError, match="not permitted"):
        TaskBuffer.open("/sys/azr-buffer-test")
