"""Command-line interface: click commands rendered with rich; torch is imported lazily."""

from coolchic.cli import commands as _commands  # noqa: F401  (registers the commands)
from coolchic.cli.app import cli, main

__all__ = ["cli", "main"]
