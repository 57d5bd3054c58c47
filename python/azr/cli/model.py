"""``azr model``: build and fetch the models runs use."""

from __future__ import annotations

import time
from pathlib import Path

import click


@click.group()
def model() -> None:
    """Build and inspect models."""


@model.command("tiny")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--seed", type=int, default=0, show_default=True)
def tiny_command(out: Path, seed: int) -> None:
    """Build the tiny Qwen2-style model and tokenizer into OUT (no download)."""
    try:
        from azr.models import build_tiny
    except ImportError as exc:
        raise click.ClickException(
            "azr model tiny needs the training stack: pip install 'azr[train]'"
        ) from exc
    start = time.perf_counter()
    build_tiny(out, seed=seed)
    click.echo(f"built the tiny model in {out} in {time.perf_counter() - start:.1f} s")
