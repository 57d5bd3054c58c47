"""``azr buffer``: inspect, export and import durable task buffers."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from azr.buffer import BufferError, TaskBuffer
from azr.tasks.types import TaskType


def _is_buffer(path: Path) -> bool:
    """Whether ``path`` holds a durable buffer: its settings, a log or a snapshot."""
    return path.is_dir() and any(
        next(path.glob(pattern), None) is not None
        for pattern in ("settings.json", "wal-*.log", "snapshot-*.bin")
    )


def _existing(path: Path) -> None:
    """Refuse a folder that holds no buffer: opening one would make it a buffer
    (its lock, settings and log), say a run folder given for RUN/buffer."""
    if not _is_buffer(path):
        hint = f" (a run keeps its buffer in {path / 'buffer'})" if _is_buffer(path / "buffer") else ""
        raise click.ClickException(f"{path}: no buffer folder here{hint}")


def _open(path: Path, must_exist: bool = True) -> TaskBuffer:
    if must_exist:
        _existing(path)
    try:
        return TaskBuffer.open_existing(path)  # with the settings it was written with
    except BufferError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def buffer() -> None:
    """Inspect, export and import durable task buffers."""


@buffer.command("stats")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the stats as one JSON object.")
def stats_command(path: Path, as_json: bool) -> None:
    """Counts per task type: live, added, duplicates, evicted."""
    stats = _open(path).stats()
    if as_json:
        click.echo(json.dumps(stats))
        return
    table = Table("task type", "live", "added", "duplicates", "evicted", title=str(path))
    for name in [t.value for t in TaskType] + ["total"]:
        s = stats[name]
        table.add_row(name, str(s["live"]), str(s["added"]), str(s["duplicates"]), str(s["evicted"]))
    Console().print(table)


@buffer.command("export")
@click.argument("path", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path, dir_okay=False))
def export_command(path: Path, out: Path) -> None:
    """Write every live entry of PATH to OUT as JSON lines."""
    try:
        n = _open(path).export_jsonl(out)
    except BufferError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"exported {n} entries to {out}")


@buffer.command("import")
@click.argument("path", type=click.Path(path_type=Path))
@click.argument("source", type=click.Path(path_type=Path, dir_okay=False, exists=True))
def import_command(path: Path, source: Path) -> None:
    """Add the entries of a JSON-lines file to the buffer at PATH (created if new)."""
    target = path.resolve()
    run = target.parent
    if target.name == "buffer" and (run / "config.yaml").is_file() and (run / ".lock").exists():
        # azr train replaces RUN/buffer: with a checkpoint's copy on --resume, or afresh.
        raise click.ClickException(
            f"{path} is a training run's live buffer, which azr train replaces (with its "
            "checkpoint's copy on --resume); import into a buffer of its own and start a run "
            "from it (selfplay.seed_buffer=...)"
        )
    buf = _open(path, must_exist=False)
    try:
        added, duplicates = buf.import_jsonl(source)
        buf.flush()
    except BufferError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"imported {added} entries ({duplicates} duplicates skipped) into {path}")


@buffer.command("salvage")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False, exists=True))
def salvage_command(path: Path) -> None:
    """Open a damaged buffer with every entry that can still be read.

    Damaged spans are skipped and the whole records after them kept; each
    damaged file is kept beside as NAME.damaged, and the buffer is rewritten
    so that it opens normally from then on."""
    _existing(path)
    try:
        buf = TaskBuffer.salvage(path)
    except BufferError as exc:
        raise click.ClickException(str(exc)) from exc
    r = buf.stats()["recovery"]
    buf.flush()
    del buf  # the lock goes with it
    if not r["damaged_files"]:
        click.echo(f"{path}: no damage found; {r['entries']} entries")
        return
    click.echo(
        f"{path}: kept {r['entries']} entries; skipped {r['damaged_bytes']} damaged bytes in "
        + ", ".join(r["damaged_files"])
        + " (each kept beside as NAME.damaged)"
    )
    from azr.rl.run import refresh_manifest

    # A checkpoint's buffer: its state.json must list the rewritten files, or the
    # checkpoint would count as damaged and a resume would pass over it.
    manifest = refresh_manifest(path)
    if manifest is not None:
        click.echo(f"{manifest}: now lists the salvaged buffer's files")
