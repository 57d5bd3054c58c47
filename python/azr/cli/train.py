"""``azr train``, ``azr seed`` and ``azr plot``."""

from __future__ import annotations

from pathlib import Path

import click

from azr._core import AzrError


@click.command("train", context_settings={"ignore_unknown_options": False})
@click.option("-c", "--config", "config_path", help="A YAML file or a preset name; default: tiny.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), help="Run folder (default run.out).")
@click.option("--steps", type=int, help="Train until this step in total.")
@click.option(
    "--resume", type=click.Path(path_type=Path, file_okay=False, exists=True), help="Continue a run."
)
@click.argument("overrides", nargs=-1)
def train_command(
    config_path: str | None,
    out: Path | None,
    steps: int | None,
    resume: Path | None,
    overrides: tuple[str, ...],
) -> None:
    """Train with Absolute Zero self-play. OVERRIDES are dotted keys: trainer.lr=1e-6."""
    try:
        from azr.rl.run import train
    except ImportError as exc:
        raise click.ClickException(
            f"azr train needs the training stack: pip install 'azr[train]' ({exc})"
        ) from exc
    from azr.rl.run import StoppedBySignal

    try:
        train(config_path, overrides, out, resume, steps)
    except StoppedBySignal as exc:
        # Checkpointed and stopped early: the shell's code for that signal, so a
        # script or scheduler can tell it from a finished run (exit 0).
        click.echo(str(exc))
        raise SystemExit(128 + exc.signum) from None
    except AzrError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:  # a full disk, a read-only folder: the last checkpoint stays intact
        raise click.ClickException(f"{_os_error(exc)}; checkpoints already written are intact") from exc


def _os_error(exc: OSError) -> str:
    where = f" ({exc.filename})" if exc.filename else ""
    return f"{exc.strerror or exc}{where}"


@click.command("seed")
@click.option("-c", "--config", "config_path", help="A YAML file or a preset name; default: tiny.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True, help="Buffer folder.")
@click.argument("overrides", nargs=-1)
def seed_command(config_path: str | None, out: Path, overrides: tuple[str, ...]) -> None:
    """Seed task buffers from the zero triplet with the untrained model (no updates)."""
    try:
        from azr.rl.run import seed_buffers
    except ImportError as exc:
        raise click.ClickException(
            f"azr seed needs the training stack: pip install 'azr[train]' ({exc})"
        ) from exc
    try:
        sizes = seed_buffers(config_path, overrides, out)
    except AzrError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(_os_error(exc)) from exc
    click.echo(f"seed buffers in {out}: " + ", ".join(f"{k} {v}" for k, v in sizes.items()))


@click.command("plot")
@click.argument("run", type=click.Path(path_type=Path, file_okay=False, exists=True))
def plot_command(run: Path) -> None:
    """Write PNG curves of a run's main metrics into RUN/plots."""
    from azr.rl.plots import plot_run

    try:
        click.echo(str(plot_run(run, warn=lambda text: click.echo(f"warning: {text}", err=True))))
    except ImportError as exc:
        raise click.ClickException(f"azr plot needs matplotlib: pip install 'azr[train]' ({exc})") from exc
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
