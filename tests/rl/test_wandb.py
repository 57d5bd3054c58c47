"""`run.wandb=true` logs every step to W&B, and a resumed run continues the same W&B run.

W&B runs offline here; its ``.wandb`` files are read back record by record.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers", reason="needs the training stack: pip install 'azr[train]'")
pytest.importorskip("wandb", reason="W&B logging needs wandb: pip install wandb")

# picks the generated module for the installed protobuf, so type checkers see no names
from wandb.proto.wandb_internal_pb2 import Record  # type: ignore[attr-defined]

from tests.rl.test_train_e2e import azr, seed_file, steps_logged

BLOCK = 32 * 1024  # the .wandb file is a LevelDB-style log of 32 KiB blocks
HEADER = 7  # file: b":W&B", magic (u16), version (u8); record: crc32, length (u16), type (u8)
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def wandb_records(path: Path) -> Iterator[Any]:
    """The protobuf records of an offline run's ``run-ID.wandb`` file, in order."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    pos, pieces = HEADER, []
    while pos + HEADER <= len(data):
        if BLOCK - pos % BLOCK < HEADER:  # a block's tail too short for a header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _crc, length, kind = struct.unpack_from("<IHB", data, pos)
        pieces.append(data[pos + HEADER : pos + HEADER + length])
        pos += HEADER + length
        if kind in (FULL, LAST):
            record = Record()
            record.ParseFromString(b"".join(pieces))
            pieces = []
            yield record
        elif kind not in (FIRST, MIDDLE):
            pieces = []  # zero padding at the end of a block


def test_a_resumed_run_continues_the_same_wandb_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(name, str(tmp_path / name))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_RUN_ID", raising=False)
    monkeypatch.delenv("WANDB_RESUME", raising=False)
    run = tmp_path / "my-run"
    seeds = seed_file(tmp_path / "seeds.jsonl")

    small = ("rollout.max_response_tokens=16", "selfplay.batch_size=2")  # W&B needs no real step
    first = azr(
        "train", "--out", str(run), "--steps", "1", "run.wandb=true", f"selfplay.seed_buffer={seeds}", *small
    )
    assert first.returncode == 0, first.stderr + first.stdout
    run_id = (run / "wandb_id").read_text().strip()
    again = azr("train", "--resume", str(run), "--steps", "2")
    assert again.returncode == 0, again.stderr + again.stdout
    assert steps_logged(run) == [1, 2]
    assert (run / "wandb_id").read_text().strip() == run_id

    logs = sorted((run / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(logs) == 2, "one offline log per invocation"
    assert {log.parent.name.rsplit("-", 1)[1] for log in logs} == {run_id}
    history: dict[int, set[str]] = {}
    for log in logs:
        records = list(wandb_records(log))
        (header,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
        assert (header.run_id, header.display_name, header.project) == (run_id, "my-run", "azr")
        for r in records:
            if r.WhichOneof("record_type") == "history":
                history[r.history.step.num] = {
                    item.key or "/".join(item.nested_key) for item in r.history.item
                }
    assert sorted(history) == [1, 2], "each step logged once, at its own step"
    for keys in history.values():
        assert {"train/loss", "timing/step", "buffer/deduction/size"} <= keys
