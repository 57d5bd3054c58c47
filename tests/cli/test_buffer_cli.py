"""`azr buffer stats|export|import` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from azr.buffer import TaskBuffer
from azr.cli import cli
from click.testing import CliRunner


def test_export_then_import_then_stats(tmp_path: Path) -> None:
    source = TaskBuffer.open(tmp_path / "a")
    source.add_many(
        [("deduction", {"program": f"def f(a):\n    return {i}", "input": "1"}, i) for i in range(7)]
    )
    source.flush()
    del source
    runner = CliRunner()
    out = tmp_path / "a.jsonl"
    result = runner.invoke(cli, ["buffer", "export", str(tmp_path / "a"), str(out)])
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == 7
    result = runner.invoke(cli, ["buffer", "import", str(tmp_path / "b"), str(out)])
    assert result.exit_code == 0 and "imported 7" in result.output
    result = runner.invoke(cli, ["buffer", "import", str(tmp_path / "b"), str(out)])
    assert "7 duplicates" in result.output
    result = runner.invoke(cli, ["buffer", "stats", str(tmp_path / "b"), "--json"])
    stats = json.loads(result.output)
    assert stats["deduction"]["live"] == 7 and stats["deduction"]["duplicates"] == 7
    assert "deduction" in runner.invoke(cli, ["buffer", "stats", str(tmp_path / "b")]).output


def test_missing_buffer_and_bad_file_are_clear_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["buffer", "stats", str(tmp_path / "nope")])
    assert result.exit_code != 0 and "no buffer folder" in result.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task_type": "deduction", "step": 0, "record": {"a": 1}}\nnot json\n')
    result = runner.invoke(cli, ["buffer", "import", str(tmp_path / "c"), str(bad)])
    assert result.exit_code != 0 and "line 2" in result.output


def test_the_cli_reads_a_buffer_with_the_settings_it_was_written_with(tmp_path: Path) -> None:
    run_buffer = TaskBuffer.open(tmp_path / "run", capacity=5)  # a run's buffer.capacity
    run_buffer.add_many(
        [("deduction", {"program": f"def f(a):\n    return {i}", "input": "1"}, i) for i in range(20)]
    )
    run_buffer.flush()
    del run_buffer
    runner = CliRunner()
    result = runner.invoke(cli, ["buffer", "stats", str(tmp_path / "run"), "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)["deduction"]
    assert (stats["live"], stats["evicted"]) == (5, 15)
    out = tmp_path / "run.jsonl"
    assert runner.invoke(cli, ["buffer", "export", str(tmp_path / "run"), str(out)]).exit_code == 0
    assert len(out.read_text().splitlines()) == 5


def test_importing_into_a_runs_live_buffer_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("run: {}\n")  # a run folder, with or without checkpoints
    (run / ".lock").touch()
    source = tmp_path / "seeds.jsonl"
    source.write_text('{"task_type": "deduction", "step": 0, "record": {"program": "x", "input": "1"}}\n')
    result = CliRunner().invoke(cli, ["buffer", "import", str(run / "buffer"), str(source)])
    assert result.exit_code != 0 and "azr train replaces" in result.output
    assert not (run / "buffer").exists()


def test_salvage_opens_a_damaged_buffer_with_what_can_be_read(tmp_path: Path) -> None:
    folder = tmp_path / "buf"
    b = TaskBuffer.open(folder)
    b.add_many([("deduction", {"program": f"def f(a):\n    return {i}", "input": "1"}, 0) for i in range(50)])
    b.flush()
    del b
    log = folder / "wal-00000000.log"
    data = bytearray(log.read_bytes())
    data[300] ^= 0xFF
    log.write_bytes(bytes(data))
    runner = CliRunner()
    refused = runner.invoke(cli, ["buffer", "stats", str(folder)])
    assert refused.exit_code != 0 and "azr buffer salvage" in refused.output
    result = runner.invoke(cli, ["buffer", "salvage", str(folder)])
    assert result.exit_code == 0, result.output
    assert "kept 49 entries" in result.output and "wal-00000000.log" in result.output
    stats = json.loads(runner.invoke(cli, ["buffer", "stats", str(folder), "--json"]).output)
    assert stats["deduction"]["live"] == 49


@pytest.mark.parametrize("command", ["stats", "export", "salvage"])
def test_a_folder_without_a_buffer_is_refused_and_left_as_it_was(tmp_path: Path, command: str) -> None:
    """Given a run folder for RUN/buffer (or any folder), inspecting must not make it a buffer."""
    run = tmp_path / "run"
    TaskBuffer.open(run / "buffer").flush()
    (run / "config.yaml").write_text("run: {}\n")
    before = sorted(p.name for p in run.iterdir())
    args = [command, str(run)] + ([str(tmp_path / "out.jsonl")] if command == "export" else [])
    result = CliRunner().invoke(cli, ["buffer", *args])
    assert result.exit_code != 0
    assert f"no buffer folder here (a run keeps its buffer in {run / 'buffer'})" in result.output
    assert sorted(p.name for p in run.iterdir()) == before
