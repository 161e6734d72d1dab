"""Each module defines one command and registers it on the group when imported."""

from coolchic.cli.commands import decode, encode, info, metrics, recipes  # noqa: F401
