"""Rendering of codec progress events: a rich bar on a terminal, log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType

from coolchic.train.progress import ProgressEvent

logger = logging.getLogger("coolchic.progress")

#: Minimum seconds between two plain-text progress lines (phase ends and warnings always log).
LOG_PERIOD_S = 10.0


class ProgressDisplay:
    """A callable progress sink, used as a context manager around one encode.

    On a terminal (and unless ``plain``) it draws a transient rich progress bar on stderr;
    otherwise it logs one line per event, throttled to one every :data:`LOG_PERIOD_S`.
    """

    def __init__(self, label: str, *, plain: bool | None = None, quiet: bool = False) -> None:
        self.label = label
        self.quiet = quiet
        self.plain = (not sys.stderr.isatty()) if plain is None else plain
        self._last_log = 0.0
        self._progress = None
        self._task = None

    def __enter__(self) -> ProgressDisplay:
        if not self.plain and not self.quiet:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            from coolchic.cli.console import stderr_console

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=stderr_console(),
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=None, status="")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind == "warning":
            logger.warning("%s: %s", self.label, event.message)
        if self._progress is not None and self._task is not None:
            status = []
            if event.psnr_db is not None:
                status.append(f"{event.psnr_db:.2f} dB")
            if event.bpp is not None:
                status.append(f"{event.bpp:.4f} bpp")
            self._progress.update(
                self._task,
                description=f"{self.label} {event.stage}/{event.phase}",
                completed=event.iteration,
                total=event.total_iterations,
                status=" ".join(status),
            )
            return
        now = time.monotonic()
        if event.kind in ("phase_end", "done", "start") or now - self._last_log >= LOG_PERIOD_S:
            self._last_log = now
            logger.info("%s: %s", self.label, event.describe())
