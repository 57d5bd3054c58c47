"""Running the `azr` CLI in a subprocess, JSON lines in and out."""

from __future__ import annotations

import json
import subprocess
import sys


def run_jsonl(args: list[str], lines: list[str]) -> list[dict[str, object]]:
    """``python -m azr ARGS`` with ``lines`` on stdin; its JSON-lines answers."""
    proc = subprocess.run(
        [sys.executable, "-m", "azr", *args],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]
