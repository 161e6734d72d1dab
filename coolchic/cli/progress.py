"""Rendering of codec progress events: rich bars on a terminal, log lines otherwise.

:class:`ProgressDisplay` follows one encode (``coolchic encode``); :class:`MultiFileProgress`
follows many (``coolchic batch`` and ``coolchic watch``): the files done out of the total with
an ETA, and one row per running file with its training phase and iterations.
"""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

from coolchic.train.progress import FORECAST_PHASE, ProgressEvent

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from coolchic.jobs.types import JobId, JobResult

logger = logging.getLogger("coolchic.progress")

#: Minimum seconds between two plain-text progress lines (phase ends and warnings always log).
LOG_PERIOD_S = 10.0


def _rich_progress(*, transient: bool) -> Progress:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from coolchic.cli.console import stderr_console

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr_console(),
        transient=transient,
    )


def _show(progress: Progress, task: TaskID, label: str, event: ProgressEvent) -> None:
    """Put an event on a rich task: stage/phase, iterations out of the recipe, PSNR, bpp."""
    progress.update(
        task,
        description=f"{label} {event.stage}/{event.phase}",
        completed=event.iteration,
        total=event.total_iterations,
        status=_status_text(event),
    )


def _status_text(event: ProgressEvent) -> str:
    status = []
    if event.psnr_db is not None:
        status.append(f"{event.psnr_db:.2f} dB")
    if event.bpp is not None:
        status.append(f"{event.bpp:.4f} bpp")
    return " ".join(status)


def _is_announcement(event: ProgressEvent) -> bool:
    """A start event with something to say (the expected time): always one log line."""
    return event.kind == "start" and bool(event.message)


def _announcement_fields(label: str, event: ProgressEvent) -> dict[str, Any]:
    """JSON log fields of an announcement: the forecast carries the expected seconds."""
    if event.phase == FORECAST_PHASE and event.eta_s is not None:
        return {"event": "forecast", "file": label, "expected_seconds": round(event.eta_s, 1)}
    return {"event": "announce", "file": label}


class _LogThrottle:
    """Decides which progress events become a log line: at most one per period and key."""

    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self._last: dict[Any, float] = {}

    def due(self, key: Any, event: ProgressEvent) -> bool:
        now = time.monotonic()
        if (
            event.kind in ("phase_end", "done", "start")
            or now - self._last.get(key, -float("inf")) >= self.period_s
        ):
            self._last[key] = now
            return True
        return False

    def forget(self, key: Any) -> None:
        self._last.pop(key, None)


class ProgressDisplay:
    """A callable progress sink, used as a context manager around one encode.

    On a terminal (and unless ``plain``) it draws a transient rich progress bar on stderr;
    otherwise it logs one line per event, throttled to one every :data:`LOG_PERIOD_S`.
    """

    def __init__(self, label: str, *, plain: bool | None = None, quiet: bool = False) -> None:
        self.label = label
        self.quiet = quiet
        self.plain = (not sys.stderr.isatty()) if plain is None else plain
        self._throttle = _LogThrottle(LOG_PERIOD_S)
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> ProgressDisplay:
        if not self.plain and not self.quiet:
            self._progress = _rich_progress(transient=True)
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
        elif _is_announcement(event):
            logger.info("%s: %s", self.label, event.message)
            return
        if self._progress is not None and self._task is not None:
            _show(self._progress, self._task, self.label, event)
            return
        if self._throttle.due(None, event):
            logger.info("%s: %s", self.label, event.describe())


class MultiFileProgress:
    """Progress of many encodes; a :class:`coolchic.jobs.types.JobListener`.

    On a terminal (and unless ``plain`` or ``quiet``): a top row with the files finished out of
    ``total`` (or a plain count when the total is unknown, as in the daemon) and the ETA, and
    one row per running file with its training stage/phase, iterations, PSNR and bpp.
    Otherwise one log line per progress event and file, at most one per ``period_s`` seconds
    (phase ends always), with ``event="progress"`` for the JSON log format.
    """

    def __init__(
        self,
        *,
        total: int | None,
        plain: bool | None = None,
        quiet: bool = False,
        period_s: float = LOG_PERIOD_S,
    ) -> None:
        self.total = total
        self.quiet = quiet
        self.plain = (not sys.stderr.isatty()) if plain is None else plain
        self._throttle = _LogThrottle(period_s)
        self._labels: dict[JobId, str] = {}
        self._progress: Progress | None = None
        self._overall: TaskID | None = None
        self._rows: dict[JobId, TaskID] = {}
        self._n_failed = 0

    def __enter__(self) -> MultiFileProgress:
        if not self.plain and not self.quiet:
            self._progress = _rich_progress(transient=False)
            self._progress.start()
            self._overall = self._progress.add_task("files", total=self.total, status="")
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._progress is not None:
            for task in self._rows.values():
                self._progress.remove_task(task)
            self._rows.clear()
            self._progress.stop()

    def job_started(self, job_id: JobId, label: str) -> None:
        self._labels[job_id] = label
        if self._progress is not None:
            self._rows[job_id] = self._progress.add_task(f"  {label}", total=None, status="")

    def job_progress(self, job_id: JobId, event: ProgressEvent) -> None:
        label = self._labels.get(job_id, str(job_id))
        if event.kind == "warning":
            logger.warning("%s: %s", label, event.message)
        elif _is_announcement(event):
            logger.info("%s: %s", label, event.message, extra=_announcement_fields(label, event))
            return
        row = self._rows.get(job_id)
        if self._progress is not None and row is not None:
            _show(self._progress, row, f"  {label}", event)
            return
        if self._throttle.due(job_id, event):
            logger.info(
                "progress %s: %s",
                label,
                event.describe(),
                extra={
                    "event": "progress",
                    "file": label,
                    "job": job_id,
                    "iteration": event.iteration,
                    "total_iterations": event.total_iterations,
                    "phase": f"{event.stage}/{event.phase}",
                },
            )

    def job_finished(self, job_id: JobId, result: JobResult) -> None:
        self._labels.pop(job_id, None)
        self._throttle.forget(job_id)
        if self._progress is None:
            return
        row = self._rows.pop(job_id, None)
        if row is not None:
            self._progress.remove_task(row)
        if self._overall is not None:
            self._n_failed += result.status == "failed"
            self._progress.update(
                self._overall,
                advance=1,
                status=f"{self._n_failed} failed" if self._n_failed else "",
            )
