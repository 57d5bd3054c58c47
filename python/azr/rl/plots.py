"""PNG curves of a run's main metrics (``azr plot RUN``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

PANELS = {
    "proposal valid rate": "propose/{t}/valid_rate",
    "proposer reward": "propose/{t}/reward",
    "solve accuracy": "solve/{t}/accuracy",
    "solver reward": "solve/{t}/reward",
    "buffer size": "buffer/{t}/size",
}
TASKS = ("deduction", "abduction", "induction")


def read_rows(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The step rows of a ``metrics.jsonl`` (objects with an integer ``step``), and
    how many lines were not one: a torn last line (a killed run) or hand edits
    cost their own lines, not the plot."""
    rows, skipped = [], 0
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if isinstance(row, dict) and type(row.get("step")) is int:
            rows.append(row)
        else:
            skipped += 1
    return rows, skipped


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else float("nan")


def plot_run(run: Path, warn: Callable[[str], None] | None = None) -> Path:
    """Write ``run/plots/metrics.png`` from ``metrics.jsonl``; returns its path
    (``warn`` hears how many lines were passed over, if any)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, skipped = read_rows(run / "metrics.jsonl")
    if not rows:
        raise ValueError(
            f"{run / 'metrics.jsonl'}: no metrics yet" + (f" ({skipped} lines unreadable)" if skipped else "")
        )
    if skipped and warn is not None:
        warn(f"{run / 'metrics.jsonl'}: passed over {skipped} line(s) that are no step's metrics")
    steps = [r["step"] for r in rows]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    for ax, (title, key) in zip(axes.flat, PANELS.items(), strict=False):
        for t in TASKS:
            ax.plot(steps, [_number(r.get(key.format(t=t))) for r in rows], label=t, marker=".")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend()
    timing = axes.flat[5]
    for key in sorted({k for r in rows for k in r if k.startswith("timing/") and k != "timing/step"}):
        timing.plot(steps, [_number(r.get(key, 0.0)) for r in rows], label=key.split("/")[1], marker=".")
    timing.set_title("seconds per phase")
    timing.set_xlabel("step")
    timing.legend()
    fig.tight_layout()
    out = run / "plots" / "metrics.png"
    out.parent.mkdir(exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
