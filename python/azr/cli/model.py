"""``azr model``: build and fetch the models runs use."""

from __future__ import annotations

import time
from pathlib import Path

import click

from azr.models import SHAPES


@click.group()
def model() -> None:
    """Build and inspect models."""


@model.command("tiny")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True)
@click.option(
    "--shape",
    type=click.Choice(list(SHAPES)),
    default="tiny",
    show_default=True,
    help="The transformer's size: tiny, or Qwen2.5-0.5B's / -1.5B's shape (random weights).",
)
def tiny_command(out: Path, seed: int, shape: str) -> None:
    """Build a random-init Qwen2-style model and its tokenizer into OUT (no download)."""
    try:
        from azr.models import build_tiny
    except ImportError as exc:
        raise click.ClickException(
            "azr model tiny needs the training stack: pip install 'azr[train]'"
        ) from exc
    if out.exists() and any(out.iterdir()):
        raise click.ClickException(f"{out} is not empty; build the model into a new or empty folder")
    start = time.perf_counter()
    try:
        build_tiny(out, seed=seed, shape=shape)
    except ImportError as exc:  # torch and transformers are imported when used
        raise click.ClickException(
            f"azr model tiny needs the training stack: pip install 'azr[train]' ({exc})"
        ) from exc
    except OSError as exc:
        raise click.ClickException(f"cannot write the model into {out}: {exc}") from exc
    click.echo(f"built the {shape} model in {out} in {time.perf_counter() - start:.1f} s")
