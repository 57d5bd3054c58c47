"""`azr plot` on the metrics.jsonl files runs actually leave: torn, edited or empty."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("matplotlib", reason="azr plot needs matplotlib: pip install 'azr[train]'")

from azr.cli import cli
from click.testing import CliRunner


def _rows(n: int) -> list[str]:
    return [
        json.dumps({"step": s, "solve/deduction/accuracy": s / 10, "timing/update": 1.0})
        for s in range(1, n + 1)
    ]


def test_lines_that_are_no_steps_metrics_are_passed_over_and_counted(tmp_path: Path) -> None:
    lines = [
        *_rows(3),
        '{"solve/deduction/accuracy": 1}',
        "[1, 2]",
        '{"step": 4, "solve/deduction/accuracy": "x"}',
    ]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 5, "solve/ded')  # torn last line
    result = CliRunner().invoke(cli, ["plot", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "plots" / "metrics.png").stat().st_size > 0
    assert "passed over 3 line(s)" in result.output


def test_a_run_without_metrics_says_so(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text("garbage\n")
    result = CliRunner().invoke(cli, ["plot", str(tmp_path)])
    assert result.exit_code != 0
    assert f"{tmp_path / 'metrics.jsonl'}: no metrics yet (1 lines unreadable)" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
