"""`azr buffer stats|export|import` end to end."""

from __future__ import annotations

import json
from pathlib import Path

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
