"""The ``azr`` command line: one click group, a subcommand group per area."""

import click

from azr import __version__
from azr.cli.buffer import buffer
from azr.cli.eval import eval_command
from azr.cli.model import model
from azr.cli.sandbox import sandbox
from azr.cli.tasks import grade_command, prompt_command, validate_command
from azr.cli.train import plot_command, seed_command, train_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="azr")
def cli() -> None:
    """azr: Absolute Zero self-play, judged by a CPython-in-WebAssembly sandbox."""


cli.add_command(sandbox)
cli.add_command(buffer)
cli.add_command(model)
cli.add_command(prompt_command)
cli.add_command(validate_command)
cli.add_command(grade_command)
cli.add_command(train_command)
cli.add_command(seed_command)
cli.add_command(plot_command)
cli.add_command(eval_command)


def main() -> None:
    cli()


__all__ = ["cli", "main"]
