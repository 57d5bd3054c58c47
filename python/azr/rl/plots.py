"""PNG curves of a run's main metrics (``azr plot RUN``)."""

from __future__ import annotations

import json
from pathlib import Path

PANELS = {
    "proposal valid rate": "propose/{t}/valid_rate",
    "proposer reward": "propose/{t}/reward",
    "solve accuracy": "solve/{t}/accuracy",
    "solver reward": "solve/{t}/reward",
    "buffer size": "buffer/{t}/size",
}
TASKS = ("deduction", "abduction", "induction")


def plot_run(run: Path) -> Path:
    """Write ``run/plots/metrics.png`` from ``metrics.jsonl``; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"{run}: no metrics yet")
    steps = [r["step"] for r in rows]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    for ax, (title, key) in zip(axes.flat, PANELS.items(), strict=False):
        for t in TASKS:
            ax.plot(steps, [r.get(key.format(t=t), float("nan")) for r in rows], label=t, marker=".")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend()
    timing = axes.flat[5]
    for key in sorted({k for r in rows for k in r if k.startswith("timing/") and k != "timing/step"}):
        timing.plot(steps, [r.get(key, 0.0) for r in rows], label=key.split("/")[1], marker=".")
    timing.set_title("seconds per phase")
    timing.set_xlabel("step")
    timing.legend()
    fig.tight_layout()
    out = run / "plots" / "metrics.png"
    out.parent.mkdir(exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
