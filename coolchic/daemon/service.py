"""The watch-folder service: discovery → readiness → journal → workers → outputs, in a loop.

:meth:`WatchService.run` blocks until its stop :class:`threading.Event` is set, then stops
taking files, lets the running encodes finish for up to ``grace_s`` seconds, kills and re-queues
what still runs, and returns. It installs no signal handler (the CLI does, in the main thread)
and may run in any thread, which is how the in-process tests drive it.

Durability: every decision is written to the journal before it is acted on, outputs are
written atomically by the workers (report last), and an input is moved or deleted only after
its job is journaled as done or failed. Whatever the moment a ``kill -9`` lands, a restart finds
running rows (re-queued), complete outputs (recognised as up to date, not encoded again) or
inputs still in the inbox whose job is finished (moved then).

The service is assembled from its parts, one concept each (see :mod:`coolchic.daemon.context`);
this module holds its life cycle: the checks and locks at start, recovery after a crash, the
loop, and the drain at stop. The names that the CLI and the tests import from here stay here.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

from coolchic.daemon.config import (
    CHECKPOINT_DIR_NAME,
    DONE_DIR_NAME,
    FAILED_DIR_NAME,
    INBOX_LOCK_NAME,
    LOCK_NAME,
    ON_SUCCESS_CHOICES,
    STATE_DIR_NAME,
    DaemonError,
    OnSuccess,
    WatchConfig,
)
from coolchic.daemon.context import logger, printable_name
from coolchic.daemon.discovery import InboxDiscovery
from coolchic.daemon.dispatch import JobDispatch
from coolchic.daemon.disposal import InputDisposal, error_report_path
from coolchic.daemon.journal import JOURNAL_NAME, Journal
from coolchic.daemon.locks import InboxLock, PidLock, StateLock
from coolchic.daemon.observer import InboxEventHandler, ObserverSupervisor
from coolchic.daemon.orphans import stop_orphan_worker
from coolchic.daemon.readiness import StabilityTracker
from coolchic.executors import Executor, create_executor
from coolchic.jobs.inputs import remove_stale_temporaries
from coolchic.jobs.types import JobListener, SilentListener
from coolchic.resources import MemoryGate, memory_budget

__all__ = [
    "CHECKPOINT_DIR_NAME",
    "DONE_DIR_NAME",
    "FAILED_DIR_NAME",
    "INBOX_LOCK_NAME",
    "LOCK_NAME",
    "ON_SUCCESS_CHOICES",
    "STATE_DIR_NAME",
    "DaemonError",
    "InboxLock",
    "OnSuccess",
    "PidLock",
    "StateLock",
    "WatchConfig",
    "WatchService",
    "error_report_path",
    "printable_name",
    "stop_orphan_worker",
]


class WatchService(InboxDiscovery, JobDispatch, InputDisposal):
    """The daemon's loop; see the module docstring.

    Args:
        config: what to watch and how to encode.
        listener: follows the running jobs (the CLI's progress display).
        clock: monotonic seconds, for readiness and scheduling.
    """

    def __init__(
        self,
        config: WatchConfig,
        *,
        listener: JobListener | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.listener = listener or SilentListener()
        self.clock = clock
        self.inbox = config.inbox.resolve()
        self.output = config.output.resolve()
        self.done_dir = config.done_dir.resolve()
        self.failed_dir = config.failed_dir.resolve()
        self.state_dir = config.state_dir.resolve()
        self._excluded = (self.output, self.done_dir, self.failed_dir, self.state_dir)
        self._events: queue.Queue[Path] = queue.Queue()
        self._ignored: set[Path] = set()
        self.memory = MemoryGate(
            memory_budget(config.settings.memory_limit) if config.scheduler is None else None
        )
        self._waiting_for_memory: set[int] = set()
        self._point_of: dict[int, int] = {}
        self._stopping = False
        self.tracker = StabilityTracker(config.stable_s, clock=clock)
        self.supervisor = ObserverSupervisor(
            self.inbox,
            InboxEventHandler(self._events),
            recursive=config.recursive,
            poll_s=config.poll_s,
            clock=clock,
        )
        self._journal: Journal | None = None
        self._pool: Executor | None = None

    # ------------------------------------------------------------------------- lifecycle

    def run(self, stop: threading.Event) -> None:
        """Watch until ``stop`` is set, then drain (see the module docstring)."""
        if not self.inbox.is_dir():
            raise DaemonError(f"{self.config.inbox}: not a folder")
        for label, folder in (("output", self.output), ("state", self.state_dir)):
            if self.inbox.is_relative_to(folder):
                raise DaemonError(
                    f"the {label} folder {folder} cannot be the inbox or a folder above it"
                )
        for folder in (self.output, self.state_dir):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise DaemonError(f"cannot create {folder} ({error.strerror or error})") from None
        for label, folder in (("output", self.output), ("inbox", self.inbox)):
            if not os.access(folder, os.W_OK | os.X_OK):
                raise DaemonError(
                    f"the {label} folder {folder} is not writable by this user: the daemon "
                    "writes its streams there and moves inputs to done/ and failed/"
                )
        with (
            InboxLock(self.inbox),
            StateLock(self.state_dir),
            Journal(self.state_dir / JOURNAL_NAME) as journal,
            create_executor(
                self.config.scheduler,
                jobs=self.config.jobs,
                gpus_per_job=self.config.gpus_per_job,
                resource_timeout_s=self.config.resource_timeout_s,
            ) as pool,
        ):
            self._journal, self._pool = journal, pool
            try:
                self._start_up()
                self.supervisor.start()
                self._scan()
                self._loop(stop)
                self.supervisor.stop()
                self._drain()
            finally:
                self.supervisor.stop()
                self._abandon_running()
                self._journal = self._pool = None
        logger.info("stopped", extra={"event": "stopped"})

    def _start_up(self) -> None:
        for row in self.journal.rows(["running"]):
            if row.worker_pid is not None:
                stop_orphan_worker(row.worker_pid)
        requeued, failed = self.journal.recover(self.config.max_interruptions)
        for row in requeued:
            self._log(
                logging.WARNING,
                "recovered",
                row,
                "the daemon ended while this file was encoding; queued again (not counted "
                "as an attempt)",
            )
        for row in failed:
            fresh = self.journal.get(row.id)
            if fresh is not None:
                self._log(logging.ERROR, "failed", fresh, fresh.error or "")
                self._dispose_failed(fresh)
        for folder in (self.output, self.failed_dir):
            for leftover in remove_stale_temporaries(folder):
                logger.info("removed the unfinished temporary file %s", leftover)
        settings = self.config.settings
        where = (
            f"on the Dask scheduler {self.config.scheduler}"
            if self.config.scheduler
            else "on this machine"
        )
        logger.info(
            "watching %s: outputs in %s, journal in %s, recipe %s, points %s, %s job(s) of "
            "%s thread(s) %s, on success %s",
            self.inbox,
            self.output,
            self.state_dir,
            settings.recipe,
            ",".join(point or settings.point_tag() for point, settings in self.config.points),
            self.config.jobs or ("as many as workers" if self.config.scheduler else 1),
            settings.threads or "all",
            where,
            self.config.on_success,
            extra={"event": "started_watching"},
        )

    def _loop(self, stop: threading.Event) -> None:
        next_scan = self.clock() + self.config.rescan_s
        while not stop.is_set():
            rescan = self._take_events()
            if self.supervisor.check():
                rescan = True
            if rescan or self.clock() >= next_scan:
                self._scan()
                next_scan = self.clock() + self.config.rescan_s
            ready, _gone = self.tracker.poll()
            for path in ready:
                self._admit(path)
            if not stop.is_set():
                self._dispatch()
            if self.pool.running:
                self._handle(self.pool.wait(self.config.tick_s))
            else:
                stop.wait(self.config.tick_s)

    def _drain(self) -> None:
        """Let the running encodes finish for up to ``grace_s``; the rest is re-queued later."""
        self._stopping = True
        running = self.pool.running
        if not running:
            return
        logger.info(
            "stopping: waiting up to %g s for %d running encode(s)",
            self.config.grace_s,
            len(running),
            extra={"event": "stopping"},
        )
        deadline = self.clock() + self.config.grace_s
        while self.pool.running:
            remaining = deadline - self.clock()
            if remaining <= 0:
                break
            self._handle(self.pool.wait(min(self.config.tick_s, remaining)))

    def _abandon_running(self) -> None:
        """Kill what still runs and put it back in the queue (no output is left half-written)."""
        if self._pool is None or self._journal is None:
            return
        self._journal.rollback()
        for job_id in list(self._pool.running):
            self.memory.release(job_id)
            self._pool.cancel(job_id)
            self._journal.requeue(job_id)
            row = self._journal.get(job_id)
            if row is not None:
                self._log(logging.WARNING, "requeued", row, "stopped before it finished")
