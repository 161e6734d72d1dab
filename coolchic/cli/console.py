"""rich consoles, one per stream, that print file names verbatim (no markup, no emoji)."""

from __future__ import annotations

import functools

from rich.console import Console


@functools.cache
def stdout_console() -> Console:
    """Results go to stdout."""
    return Console(markup=False, emoji=False, highlight=False)


@functools.cache
def stderr_console() -> Console:
    """Progress and diagnostics go to stderr."""
    return Console(stderr=True, markup=False, emoji=False, highlight=False)
