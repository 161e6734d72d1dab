"""Each module defines one command and registers it on the group when imported."""

from coolchic.cli.commands import (  # noqa: F401
    batch,
    decode,
    encode,
    info,
    metrics,
    recipes,
    report,
    status,
    watch,
)
