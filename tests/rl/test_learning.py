"""The learning check (slow): with the real solver pieces, reward rises on a narrow family."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers", reason="needs the training stack: pip install 'azr[train]'")

SCRIPT = Path(__file__).resolve().parents[2] / "benches" / "learning_check.py"


@pytest.mark.slow
def test_solver_reward_rises_on_the_constant_family(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, str(SCRIPT), "--steps", "50", "--lr", "5e-4", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    first, last = summary["accuracy"]
    assert last > first + 0.3, (
        f"accuracy {first:.2f} -> {last:.2f}: the policy gradient does not improve the solver"
    )
    assert summary["reward"][1] > summary["reward"][0]
    assert (tmp_path / "curve.png").is_file()
