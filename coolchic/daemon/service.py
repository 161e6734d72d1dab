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
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import signal
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from coolchic import __version__
from coolchic.daemon.journal import JOURNAL_NAME, TERMINAL_STATES, JobRow, Journal
from coolchic.daemon.observer import RESCAN, InboxEventHandler, ObserverSupervisor
from coolchic.daemon.readiness import StabilityTracker
from coolchic.decode_memory import format_bytes
from coolchic.errors import CoolchicError, InputError
from coolchic.executors import DEFAULT_RESOURCE_TIMEOUT_S, Executor, create_executor
from coolchic.io.files import fsync_directory
from coolchic.jobs import (
    NAME_MAX_BYTES,
    EncodeSettings,
    ErrorKind,
    JobFinished,
    JobId,
    JobListener,
    JobProgress,
    JobRequest,
    JobResult,
    SilentListener,
    find_inputs,
    frame_size,
    is_ignored_name,
    is_input_name,
    job_memory_estimate,
    output_paths,
    refusal_reason,
    remove_stale_temporaries,
    write_json_atomic,
)
from coolchic.resources import MemoryGate, ResourceError, memory_budget, refuse_if_too_big

logger = logging.getLogger(__name__)

OnSuccess = Literal["keep", "move", "delete"]
ON_SUCCESS_CHOICES: tuple[OnSuccess, ...] = ("keep", "move", "delete")

DONE_DIR_NAME = "done"
FAILED_DIR_NAME = "failed"
STATE_DIR_NAME = ".coolchic"
LOCK_NAME = "daemon.lock"
#: Training checkpoints of the jobs, in the state folder.
CHECKPOINT_DIR_NAME = "checkpoints"
INBOX_LOCK_NAME = ".coolchic-watch.lock"


class DaemonError(CoolchicError):
    """The daemon cannot start: the inbox is missing, or another daemon holds the state."""


@dataclass(frozen=True)
class WatchConfig:
    """Everything the service needs; seconds are floats, paths may be relative.

    ``done/`` and ``failed/`` are folders of the inbox (a rename within one file system is
    atomic; a folder beside the inbox may be on another mount, in a container for instance).
    """

    inbox: Path
    output: Path
    state_dir: Path
    settings: EncodeSettings
    stable_s: float = 5.0
    poll_s: float | None = None
    rescan_s: float = 60.0
    on_success: OnSuccess = "move"
    max_attempts: int = 3
    max_interruptions: int = 5
    retry_s: float = 30.0
    retry_cap_s: float = 1800.0
    grace_s: float = 60.0
    recursive: bool = False
    include_png: bool = False
    jobs: int | None = None
    scheduler: str | None = None
    gpus_per_job: float = 0.0
    resource_timeout_s: float = DEFAULT_RESOURCE_TIMEOUT_S
    tick_s: float = 0.2

    def __post_init__(self) -> None:
        for name in ("stable_s", "rescan_s", "retry_s", "retry_cap_s", "grace_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, found {getattr(self, name)}")
        if self.poll_s is not None and not self.poll_s > 0:
            raise ValueError(f"poll_s must be > 0, found {self.poll_s}")
        if not self.tick_s > 0:
            raise ValueError(f"tick_s must be > 0, found {self.tick_s}")
        if min(self.max_attempts, self.max_interruptions, self.jobs or 1) < 1:
            raise ValueError("max_attempts, max_interruptions and jobs must be at least 1")
        if self.on_success not in ON_SUCCESS_CHOICES:
            raise ValueError(f"on_success must be one of {ON_SUCCESS_CHOICES}")

    @property
    def done_dir(self) -> Path:
        return self.inbox / DONE_DIR_NAME

    @property
    def failed_dir(self) -> Path:
        return self.inbox / FAILED_DIR_NAME

    def retry_delay_s(self, attempts: int) -> float:
        """Exponential backoff: ``retry_s`` after the first attempt, doubling, capped."""
        return min(self.retry_cap_s, self.retry_s * 2 ** max(0, attempts - 1))


class PidLock:
    """An exclusive ``flock`` on a file that holds the owner's PID, taken without waiting.

    The kernel releases it when the process dies, even by ``kill -9``. Where ``fcntl`` does not
    exist (Windows) no lock is taken.
    """

    def __init__(self, path: Path, holder: str) -> None:
        self.path = path
        self.holder = holder  # what the owner does, for the refusal: "is using the state …"
        self._handle: Any = None

    def __enter__(self) -> PidLock:
        try:
            import fcntl
        except ImportError:
            return self
        try:
            handle = open(self.path, "a+", encoding="utf-8")  # held while the daemon runs
        except OSError as error:
            raise DaemonError(
                f"cannot create the lock file {self.path} ({error.strerror or error})"
            ) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            owner = handle.read().strip() or "?"
            handle.close()
            raise DaemonError(f"another coolchic watch (pid {owner}) {self.holder}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._handle is not None:
            self._handle.close()  # closing releases the lock
            self._handle = None


class StateLock(PidLock):
    """``<state_dir>/daemon.lock``: one daemon per journal."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir / LOCK_NAME, f"is using the state folder {state_dir}")


class InboxLock(PidLock):
    """``<inbox>/.coolchic-watch.lock``: one daemon per inbox, whatever its state folder.

    Two daemons with two journals would each encode every file; a second daemon is refused
    instead (see ``docs/deploy.md`` for why it does not cooperate). The name is hidden, so it
    is never taken for an input.
    """

    def __init__(self, inbox: Path) -> None:
        super().__init__(inbox / INBOX_LOCK_NAME, f"is watching the inbox {inbox}")


class WatchService:
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
            "watching %s: outputs in %s, journal in %s, recipe %s, lmbda %g, %s job(s) of "
            "%s thread(s) %s, on success %s",
            self.inbox,
            self.output,
            self.state_dir,
            settings.recipe,
            settings.lmbda,
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

    # ------------------------------------------------------------------------- discovery

    def _take_events(self) -> bool:
        """Follow the paths that events named; True if a folder changed (rescan)."""
        rescan = False
        while True:
            try:
                path = self._events.get_nowait()
            except queue.Empty:
                return rescan
            if path == RESCAN:
                rescan = True
            elif self._is_candidate(path):
                self.tracker.touch(path)

    def _is_candidate(self, path: Path) -> bool:
        try:
            relative = path.relative_to(self.inbox)
        except ValueError:
            return False
        if not relative.parts or (len(relative.parts) > 1 and not self.config.recursive):
            return False
        if any(is_ignored_name(part) for part in relative.parts[:-1]):
            return False
        if any(path.is_relative_to(folder) for folder in self._excluded):
            return False
        return is_input_name(relative.name, include_png=self.config.include_png)

    def _scan(self) -> None:
        """Follow every input in the inbox that the journal does not know yet."""
        found = find_inputs(
            self.inbox,
            recursive=self.config.recursive,
            include_png=self.config.include_png,
            exclude=self._excluded,
        )
        for item in found:
            if item.path in self.tracker:
                continue
            try:
                info = os.stat(item.path)
            except OSError:
                continue
            if not stat.S_ISREG(info.st_mode):
                self._ignore_once(item.path, item.refused or "not a regular file")
                continue
            row = self.journal.find(item.path, info.st_size, info.st_mtime_ns)
            if row is None:
                self.tracker.observe(item.path)
            elif row.state in TERMINAL_STATES:
                self._seen_again(row)

    def _ignore_once(self, path: Path, reason: str) -> None:
        """Say once why an entry with an input's name is left where it is (a FIFO, a folder)."""
        if path in self._ignored:
            return
        self._ignored.add(path)
        name = printable_name(os.path.relpath(path, self.inbox))
        logger.warning(
            "ignored %s: %s; left in the inbox",
            name,
            reason,
            extra={"event": "ignored", "file": name},
        )

    def _admit(self, path: Path) -> None:
        """A ready file: queue it, unless the journal knows this version already."""
        try:
            info = os.stat(path)
        except OSError:
            return
        known = self.journal.find(path, info.st_size, info.st_mtime_ns)
        if known is not None:
            if known.state in TERMINAL_STATES:
                self._seen_again(known)
            return
        row = self.journal.enqueue(path, info.st_size, info.st_mtime_ns, info.st_ino)
        self._log(logging.INFO, "queued", row, f"{info.st_size} bytes")
        refusal = refusal_reason(path, self.inbox)
        if refusal is not None:
            self._finish_failed(row, f"refused: {refusal}", "permanent")

    def _seen_again(self, row: JobRow) -> None:
        """A finished file version is in the inbox: finish its disposal, or queue it again.

        If the journal says its input was moved away or deleted, someone brought it back
        (``mv failed/x.yuv .`` keeps size and mtime): that is a request to run it again.
        Otherwise a crash came between the journal and the move: do the move now.
        """
        if row.disposed_to is not None and row.disposed_to != "kept":
            self.journal.revive(row.id)
            self._log(logging.INFO, "queued", row, "brought back into the inbox; queued again")
            return
        self._dispose(row)

    # ------------------------------------------------------------------------- jobs

    def _dispatch(self) -> None:
        if self._waiting_for_memory:
            return  # the next job waits until a running one ends (see _handle)
        while self.pool.free > 0:
            row = self.journal.claim()
            if row is None or self._start(row) is False:
                return  # nothing queued, or the next job waits for memory

    def _memory_estimate(self, path: Path) -> int | None:
        """The job's predicted peak; raises :class:`ResourceError` if it can never fit."""
        estimate = job_memory_estimate(path, self.config.settings)
        refuse_if_too_big(*(frame_size(path) or (0, 0)), estimate, self.memory.budget)
        return estimate

    def _start(self, row: JobRow) -> bool | None:
        """Start ``row``'s job; False when it must wait for memory (it is queued again)."""
        path = Path(row.path)
        try:
            info = os.stat(path)
        except FileNotFoundError:
            self.journal.forget(row.id)
            self._log(logging.WARNING, "vanished", row, "deleted before it was encoded")
            return
        except OSError as error:
            self._after_failure(row, f"cannot read: {error.strerror or error}", "transient")
            return
        if (info.st_size, info.st_mtime_ns) != (row.size, row.mtime_ns):
            self.journal.forget(row.id)
            self.tracker.touch(path)
            self._log(logging.INFO, "changed", row, "changed since it was queued; waiting")
            return
        refusal = refusal_reason(path, self.inbox)
        try:
            if refusal is not None:
                raise InputError(f"refused: {refusal}")
            cool, report = output_paths(path.relative_to(self.inbox), self.output)
            estimate = self._memory_estimate(path)
        except (InputError, ResourceError) as error:
            self._finish_failed(row, str(error), "permanent")
            return
        if not self.memory.admits(estimate):
            self.journal.requeue(row.id)  # first in line again once memory is released
            self._waiting_for_memory.add(row.id)  # no claims until a running job ends
            self._log(
                logging.INFO,
                "waiting",
                row,
                f"needs about {format_bytes(estimate or 0)}; waits until the running "
                f"encodes ({format_bytes(self.memory.held)}) leave room in "
                f"{format_bytes(self.memory.budget or 0)}",
            )
            return False
        request = JobRequest(
            path,
            cool,
            report,
            self.config.settings,
            skip_if_up_to_date=True,
            checkpoint_path=self._checkpoint_of(row),
        )
        try:
            self.pool.submit(JobId(row.id), request)
        except (OSError, RuntimeError) as error:
            self._after_failure(row, f"cannot start a worker process: {error}", "transient")
            return
        self.memory.hold(row.id, estimate)
        self.journal.set_worker(row.id, self.pool.pid_of(JobId(row.id)))
        self.listener.job_started(JobId(row.id), printable_name(path.name))
        self._log(
            logging.INFO,
            "started",
            row,
            f"attempt {row.attempts} of {self.config.max_attempts}",
            attempt=row.attempts,
        )

    def _handle(self, messages: list[JobProgress | JobFinished]) -> None:
        for message in messages:
            if isinstance(message, JobProgress):
                self.listener.job_progress(message.job_id, message.event)
                continue
            self.listener.job_finished(message.job_id, message.result)
            self.memory.release(message.job_id)
            self._waiting_for_memory.clear()  # memory was released: try the queue again
            row = self.journal.get(message.job_id)
            if row is not None:
                self._finished(row, message.result)

    def _finished(self, row: JobRow, result: JobResult) -> None:
        self.journal.clear_interruptions()
        if result.status == "failed":
            self._after_failure(
                row, result.error or "unknown error", result.error_kind, detail=result.detail
            )
            return
        report = result.report or {}
        self.journal.finish_done(
            row.id,
            output=report.get("output"),
            bpp=result.bpp,
            psnr_db=result.psnr_db,
            encode_seconds=report.get("encode_seconds"),
        )
        done = self.journal.get(row.id)
        assert done is not None
        self._log(
            logging.INFO,
            "done",
            done,
            f"{result.summary()} -> {report.get('output')}",
            bpp=result.bpp,
            psnr_db=result.psnr_db,
            seconds=round(result.seconds, 3),
            output=report.get("output"),
            skipped=result.status == "skipped",
        )
        self._dispose(done)

    def _after_failure(
        self, row: JobRow, error: str, kind: ErrorKind | None, *, detail: str | None = None
    ) -> None:
        if kind == "transient" and row.attempts < self.config.max_attempts:
            delay = self.config.retry_delay_s(row.attempts)
            self.journal.schedule_retry(row.id, error=error, error_kind=kind, delay_s=delay)
            self._log(
                logging.WARNING,
                "retry",
                row,
                f"{error}; retry in {delay:g} s",
                error=error,
                error_kind=kind,
                retry_in_s=delay,
            )
            return
        self._finish_failed(row, error, kind, detail=detail)

    def _checkpoint_of(self, row: JobRow) -> Path:
        """The job's training checkpoint: kept across restarts and retries, by job id."""
        return self.state_dir / CHECKPOINT_DIR_NAME / f"job-{row.id}.pt"

    def _finish_failed(
        self, row: JobRow, error: str, kind: ErrorKind | None, *, detail: str | None = None
    ) -> None:
        with contextlib.suppress(OSError):
            self._checkpoint_of(row).unlink(missing_ok=True)
        self.journal.finish_failed(row.id, error=error, error_kind=kind)
        failed = self.journal.get(row.id)
        assert failed is not None
        self._log(logging.ERROR, "failed", failed, error, error=error, error_kind=kind)
        self._dispose_failed(failed, detail=detail)

    # ------------------------------------------------------------------------- inputs

    def _dispose(self, row: JobRow) -> None:
        """Apply the input policy of a finished job (again: this is idempotent)."""
        if row.state == "failed":
            self._dispose_failed(row)
        elif row.state == "done":
            self._dispose_done(row)

    def _still_there(self, row: JobRow) -> bool:
        try:
            info = os.stat(row.path)
        except OSError:
            return False
        return (info.st_size, info.st_mtime_ns) == (row.size, row.mtime_ns)

    def _destination(self, folder: Path, path: Path) -> Path:
        target = folder / path.relative_to(self.inbox)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.parent.resolve().is_relative_to(folder):
            raise InputError(f"{target} would lie outside {folder}")
        return target

    def _dispose_done(self, row: JobRow) -> None:
        policy = self.config.on_success
        if policy == "keep":
            if row.disposed_to is None:
                self.journal.set_disposed(row.id, "kept")
            return
        if not self._still_there(row):
            return
        path = Path(row.path)
        try:
            if policy == "delete":
                path.unlink()
                where = "deleted"
            else:
                target = self._destination(self.done_dir, path)
                os.replace(path, target)
                fsync_directory(target.parent)
                where = str(target)
        except (OSError, InputError) as error:
            self._log(logging.ERROR, "dispose_failed", row, f"cannot {policy} the input: {error}")
            return
        self.journal.set_disposed(row.id, where)

    def _dispose_failed(self, row: JobRow, *, detail: str | None = None) -> None:
        """Move the input to ``failed/`` beside ``<name>.error.json`` (written first)."""
        if not self._still_there(row):
            return
        path = Path(row.path)
        try:
            target = self._destination(self.failed_dir, path)
            write_json_atomic(
                error_report_path(target),
                {
                    "input": str(path),
                    "moved_to": str(target),
                    "error": row.error,
                    "error_kind": row.error_kind,
                    "attempts": row.attempts,
                    "job": row.id,
                    "size": row.size,
                    "failed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "settings": self.config.settings.as_dict(),
                    "version": __version__,
                    "detail": detail,
                },
            )
            os.replace(path, target)
            fsync_directory(target.parent)
        except (OSError, InputError) as error:
            self._log(logging.ERROR, "dispose_failed", row, f"cannot move the input: {error}")
            return
        self.journal.set_disposed(row.id, str(target))

    # ------------------------------------------------------------------------- logs

    def _log(self, level: int, event: str, row: JobRow, message: str, **fields: Any) -> None:
        """One line per event; ``event``, ``file``, ``job`` and ``fields`` go to JSON logs."""
        name = printable_name(os.path.relpath(row.path, self.inbox))
        extra = {"event": event, "file": name, "job": row.id, "state": row.state, **fields}
        logger.log(level, "%s %s: %s", event, name, message, extra=extra)


def error_report_path(failed_input: Path) -> Path:
    """``<name>.error.json`` beside a failed input, or ``<hash>.error.json`` for a long name.

    Its temporary name (see :func:`~coolchic.io.files.atomic_write_bytes`) must fit in the file
    system's 255 bytes too; the report's ``moved_to`` names the input either way.
    """
    name = failed_input.name + ".error.json"
    if len(os.fsencode(name)) + len("..XXXXXXXX.tmp") <= NAME_MAX_BYTES:
        return failed_input.with_name(name)
    digest = hashlib.sha256(os.fsencode(failed_input.name)).hexdigest()[:16]
    return failed_input.with_name(f"{digest}.error.json")


def printable_name(name: str) -> str:
    """A file name fit for one log line: control characters and undecodable bytes escaped."""
    return name if name.isprintable() else ascii(name)[1:-1]


def stop_orphan_worker(pid: int, *, timeout_s: float = 10.0) -> bool:
    """Kill a worker that a killed daemon left behind, so that no job ever runs twice.

    Workers exit by themselves when their daemon dies, but not at the same instant. Only a
    ``multiprocessing`` child that started before this process did is killed (read from
    ``/proc``), so a PID that was reused since is left alone. Linux only; elsewhere a no-op.

    Returns:
        True if such a worker was found and killed.
    """
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
        started = _start_ticks(pid)
        own_start = _start_ticks(os.getpid())
    except (OSError, ValueError, IndexError):
        return False
    if b"multiprocessing" not in command or started > own_start:
        return False
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if _start_ticks(pid) != started:
                break  # gone, and the PID reused already
        except (OSError, ValueError, IndexError):
            break
        if _process_state(pid) in ("Z", "X"):
            break
        time.sleep(0.05)
    logger.warning("killed worker process %d, left running by the previous daemon", pid)
    return True


def _stat_fields(pid: int) -> list[str]:
    """Fields of ``/proc/PID/stat`` after the command name (which may hold spaces)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _start_ticks(pid: int) -> int:
    return int(_stat_fields(pid)[19])  # field 22 of stat(5): start time since boot, in ticks


def _process_state(pid: int) -> str:
    try:
        return _stat_fields(pid)[0]
    except (OSError, IndexError):
        return "X"
