"""File-system events: a handler that only queues paths, and a supervisor that keeps it alive.

Events are hints, never the source of truth: they say which path to look at soon. The service
also scans the inbox at start and periodically, because watchdog gives no event for files
present before it starts, loses events on queue overflow, sees nothing on network file systems
with the native observer, and stops for good if its handler raises or the watched folder goes
away. Hence:

- :class:`InboxEventHandler` puts paths on a :class:`queue.Queue` inside ``try/except`` and
  never blocks or raises (an exception would kill the dispatcher thread silently);
- :class:`ObserverSupervisor` starts the native observer (or a polling one with ``poll_s``,
  for NFS/SMB/Docker Desktop), falls back to polling when inotify limits are reached, and
  restarts the observer when it died; the service rescans after a restart.
"""

from __future__ import annotations

import logging
import os
import queue
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

logger = logging.getLogger(__name__)

#: Put on the queue when a folder changed: the service then rescans instead of tracking a file.
RESCAN = Path("<rescan>")

_FILE_EVENTS = frozenset({"created", "modified", "moved", "closed", "deleted"})


class InboxEventHandler(FileSystemEventHandler):
    """Queues the paths that events name; ignores everything else; never raises."""

    def __init__(self, paths: queue.Queue[Path]) -> None:
        super().__init__()
        self.paths = paths

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            if event.event_type not in _FILE_EVENTS:
                return
            if event.is_directory:
                if event.event_type in ("created", "moved"):
                    self.paths.put_nowait(RESCAN)  # a folder moved in (with --recursive)
                return
            for raw in (event.src_path, getattr(event, "dest_path", "")):
                if raw:
                    self.paths.put_nowait(Path(os.fsdecode(raw)))
        except Exception:  # the dispatcher thread must survive whatever happens here
            logger.exception("ignored a file-system event that could not be queued")


class ObserverSupervisor:
    """Owns the watchdog observer of one folder: start, health check and restart, stop.

    Args:
        folder: the inbox.
        handler: the event handler.
        recursive: watch sub-folders too.
        poll_s: use a polling observer with this period instead of native events.
        restart_delay_s: least time between two restart attempts.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        folder: Path,
        handler: FileSystemEventHandler,
        *,
        recursive: bool = False,
        poll_s: float | None = None,
        restart_delay_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.folder = folder
        self.handler = handler
        self.recursive = recursive
        self.poll_s = poll_s
        self.restart_delay_s = restart_delay_s
        self.clock = clock
        self.observer: BaseObserver | None = None
        self.restarts = 0
        self._last_attempt = -float("inf")

    @property
    def kind(self) -> str:
        return "none" if self.observer is None else type(self.observer).__name__

    def is_alive(self) -> bool:
        return self.observer is not None and self.observer.is_alive()

    def start(self) -> bool:
        """Start watching; returns False (and logs why) if the folder cannot be watched now."""
        self._last_attempt = self.clock()
        try:
            self.observer = self._start(self._make(polling=self.poll_s is not None))
        except OSError as error:
            if self.poll_s is not None or not _is_inotify_limit(error):
                logger.error("cannot watch %s: %s", self.folder, error.strerror or error)
                self.observer = None
                return False
            logger.warning(
                "native file events unavailable (%s), polling every 1 s instead; raise "
                "fs.inotify.max_user_watches / max_user_instances with sysctl to avoid this",
                error.strerror or error,
            )
            self.poll_s = 1.0
            return self.start()
        logger.debug("watching %s with %s", self.folder, self.kind)
        return True

    def check(self) -> bool:
        """Restart the observer if it died; True when a restart happened (rescan then)."""
        if self.is_alive():
            return False
        if self.clock() - self._last_attempt < self.restart_delay_s:
            return False
        logger.warning("the file-system observer of %s stopped; restarting it", self.folder)
        self.stop()
        restarted = self.start()
        self.restarts += restarted
        return restarted

    def stop(self) -> None:
        observer, self.observer = self.observer, None
        if observer is None:
            return
        try:
            observer.stop()
            if observer.is_alive():
                observer.join(timeout=5.0)
        except Exception:  # stopping a broken observer must not stop the daemon
            logger.debug("error while stopping the observer", exc_info=True)

    def _make(self, *, polling: bool) -> BaseObserver:
        if polling:
            return PollingObserver(timeout=self.poll_s or 1.0)
        return Observer()

    def _start(self, observer: BaseObserver) -> BaseObserver:
        observer.schedule(self.handler, str(self.folder), recursive=self.recursive)
        observer.daemon = True
        try:
            observer.start()
        except BaseException:
            _stop_quietly(observer)
            raise
        return observer


def _stop_quietly(observer: Any) -> None:
    try:
        observer.stop()
    except Exception:
        logger.debug("error while stopping a failed observer", exc_info=True)


def _is_inotify_limit(error: OSError) -> bool:
    return error.errno in (24, 28) or "inotify" in str(error)
