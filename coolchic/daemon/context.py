"""What every part of the watch service shares: its folders, journal, pool and log lines.

:class:`~coolchic.daemon.service.WatchService` is built from parts, one concept each:
:mod:`~coolchic.daemon.discovery` (inbox → queue), :mod:`~coolchic.daemon.dispatch`
(queue → workers → outcome) and :mod:`~coolchic.daemon.disposal` (what becomes of the input).
They derive from :class:`ServiceContext`, which declares the state they read and write.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import queue
    from pathlib import Path

    from coolchic.daemon.config import WatchConfig
    from coolchic.daemon.journal import JobRow, Journal
    from coolchic.daemon.readiness import StabilityTracker
    from coolchic.executors import Executor
    from coolchic.jobs.types import ErrorKind, JobListener
    from coolchic.resources import MemoryGate

#: One logger for the whole service, named as before the service was split into modules, so
#: that log filters and the ``logger`` field of the JSON logs stay the same.
logger = logging.getLogger("coolchic.daemon.service")


class ServiceContext:
    """The state that the service's parts share; :class:`WatchService` sets it up."""

    config: WatchConfig
    listener: JobListener
    inbox: Path
    output: Path
    done_dir: Path
    failed_dir: Path
    state_dir: Path
    memory: MemoryGate
    tracker: StabilityTracker
    _excluded: tuple[Path, ...]
    _events: queue.Queue[Path]
    _ignored: set[Path]
    _waiting_for_memory: set[int]
    #: The rate point each running job is at (index into ``config.points``), by job id.
    _point_of: dict[int, int]
    #: Set once the service drains: no new encode starts, not even a file's next rate point.
    _stopping: bool
    _journal: Journal | None
    _pool: Executor | None

    @property
    def journal(self) -> Journal:
        if self._journal is None:
            raise RuntimeError("the service is not running")
        return self._journal

    @property
    def pool(self) -> Executor:
        if self._pool is None:
            raise RuntimeError("the service is not running")
        return self._pool

    def _log(self, level: int, event: str, row: JobRow, message: str, **fields: Any) -> None:
        """One line per event; ``event``, ``file``, ``job`` and ``fields`` go to JSON logs."""
        name = printable_name(os.path.relpath(row.path, self.inbox))
        extra = {"event": event, "file": name, "job": row.id, "state": row.state, **fields}
        logger.log(level, "%s %s: %s", event, name, message, extra=extra)

    if TYPE_CHECKING:  # defined by one part, called by the others

        def _dispose(self, row: JobRow) -> None: ...

        def _dispose_failed(self, row: JobRow, *, detail: str | None = None) -> None: ...

        def _finish_failed(
            self, row: JobRow, error: str, kind: ErrorKind | None, *, detail: str | None = None
        ) -> None: ...


def printable_name(name: str) -> str:
    """A file name fit for one log line: control characters and undecodable bytes escaped."""
    return name if name.isprintable() else ascii(name)[1:-1]
