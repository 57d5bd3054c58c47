"""`python -m azr` runs the CLI."""

from azr.cli import main

main()
