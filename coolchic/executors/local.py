"""The default executor: jobs run on this machine, each in a spawned worker process.

A worker process per running job (rather than a thread) means an encode can be stopped at any
moment with SIGKILL, and a crash of one encode (out of memory, a native library) costs only its
own job, which comes back as a transient failure. No extra dependency is needed.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from coolchic.executors.base import ExecutorBase
from coolchic.jobs.run import run_job
from coolchic.jobs.types import JobFinished, JobId, JobMessage, JobProgress, JobRequest, JobResult
from coolchic.train.progress import ProgressEvent

logger = logging.getLogger(__name__)


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: multiprocessing.connection.Connection
    job_id: JobId | None = None
    request: JobRequest | None = None


class LocalExecutor(ExecutorBase):
    """Runs jobs in spawned child processes, one job per child at a time.

    A child ignores SIGINT and SIGTERM (the parent decides when an encode stops: it may let it
    finish, or kill it with SIGKILL), and exits at once when its parent dies, so a daemon killed
    with ``kill -9`` leaves no encode running behind it. A child outlives its job and takes the
    next one, so torch is imported once per child. Children are started on demand.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"a pool needs at least one worker, found {size}")
        self.size = size
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []

    @property
    def running(self) -> dict[JobId, JobRequest]:
        """The jobs being run, by id."""
        return {
            w.job_id: w.request
            for w in self._workers
            if w.job_id is not None and w.request is not None
        }

    @property
    def free(self) -> int:
        """How many more jobs can be submitted now."""
        return self.size - len(self.running)

    def pid_of(self, job_id: JobId) -> int | None:
        worker = self._find(job_id)
        return None if worker is None else worker.process.pid

    def submit(self, job_id: JobId, request: JobRequest) -> None:
        """Hand a job to an idle child (started if needed)."""
        if job_id in self.running:
            raise ValueError(f"job {job_id} is already running")
        if self.free < 1:
            raise RuntimeError("every worker is busy")
        for _attempt in range(2):
            worker = self._idle_worker()
            try:
                worker.conn.send((job_id, request))
            except OSError:  # the idle child died (OOM killer, kill): start a fresh one
                self._discard(worker)
                continue
            worker.job_id, worker.request = job_id, request
            return
        raise RuntimeError("could not start a worker process")

    def wait(self, timeout: float) -> list[JobMessage]:
        """Wait up to ``timeout`` seconds for messages of the running jobs and return them.

        Log records that the children emit are handed to this process's loggers here.
        Returns at once, with nothing, when no job is running.
        """
        busy = [w for w in self._workers if w.job_id is not None]
        if not busy:
            return []
        handles: list[Any] = [w.conn for w in busy] + [w.process.sentinel for w in busy]
        multiprocessing.connection.wait(handles, timeout)
        messages: list[JobMessage] = []
        for worker in busy:
            messages.extend(self._drain(worker))
        return messages

    def cancel(self, job_id: JobId) -> JobRequest | None:
        """Kill the child running ``job_id`` (SIGKILL) and remove its temporary files."""
        worker = self._find(job_id)
        if worker is None:
            return None
        request = worker.request
        self._discard(worker)
        if request is not None:
            _remove_job_temporaries(request)
        return request

    def close(self) -> None:
        """Stop every child: idle ones are asked to exit, busy ones are killed."""
        for worker in list(self._workers):
            if worker.job_id is None:
                with contextlib.suppress(OSError):
                    worker.conn.send(None)
        deadline = time.monotonic() + 2.0
        for worker in list(self._workers):
            if worker.job_id is None:
                worker.process.join(max(0.0, deadline - time.monotonic()))
            self._discard(worker)

    # ----------------------------------------------------------------------------------------

    def _find(self, job_id: JobId) -> _Worker | None:
        return next((w for w in self._workers if w.job_id == job_id), None)

    def _idle_worker(self) -> _Worker:
        for worker in self._workers:
            if worker.job_id is None and worker.process.is_alive():
                return worker
        for worker in [w for w in self._workers if w.job_id is None]:
            self._discard(worker)
        parent_conn, child_conn = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_worker_main,
            args=(child_conn,),
            name="coolchic-worker",
            daemon=False,
        )
        process.start()
        child_conn.close()
        worker = _Worker(process=process, conn=parent_conn)
        self._workers.append(worker)
        logger.debug("started worker process %s", process.pid)
        return worker

    def _discard(self, worker: _Worker) -> None:
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(5.0)
        worker.conn.close()
        if worker in self._workers:
            self._workers.remove(worker)

    def _drain(self, worker: _Worker) -> Iterator[JobMessage]:
        """Messages waiting from one busy worker; a dead worker ends its job as failed."""
        job_id, request = worker.job_id, worker.request
        assert job_id is not None and request is not None
        try:
            while worker.conn.poll():
                kind, message_job, payload = worker.conn.recv()
                if kind == "log":
                    _emit_child_record(payload, message_job)
                elif kind == "progress":
                    yield JobProgress(message_job, payload)
                elif kind == "result":
                    worker.job_id, worker.request = None, None
                    yield JobFinished(message_job, payload)
                    return
        except (EOFError, OSError):
            pass
        if worker.process.is_alive():
            return
        worker.process.join(1.0)
        code = worker.process.exitcode
        self._discard(worker)
        _remove_job_temporaries(request)
        reason = f"killed by signal {-code}" if code is not None and code < 0 else f"exit {code}"
        yield JobFinished(
            job_id,
            JobResult(
                request.input_path,
                "failed",
                error=f"the worker process died ({reason})",
                error_kind="transient",
            ),
        )


def _remove_job_temporaries(request: JobRequest) -> None:
    for target in (request.cool_path, request.report_path):
        for leftover in target.parent.glob(f".{target.name}.*.tmp"):
            with contextlib.suppress(OSError):
                leftover.unlink()


def _emit_child_record(payload: dict[str, Any], job_id: JobId | None) -> None:
    record = logging.makeLogRecord(payload)
    record.job = job_id
    child_logger = logging.getLogger(record.name)
    if child_logger.isEnabledFor(record.levelno):
        child_logger.handle(record)


class _PipeLogHandler(logging.Handler):
    """In a child: sends each record, already formatted, to the parent."""

    def __init__(self, conn: multiprocessing.connection.Connection) -> None:
        super().__init__(logging.DEBUG)
        self.conn = conn
        self.job_id: JobId | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            payload = {
                "name": record.name,
                "levelno": record.levelno,
                "levelname": record.levelname,
                "msg": record.getMessage(),
                "created": record.created,
                "msecs": record.msecs,
                "exc_text": (
                    logging.Formatter().formatException(record.exc_info)
                    if record.exc_info
                    else None
                ),
            }
            self.conn.send(("log", self.job_id, payload))
        except Exception:
            self.handleError(record)


def _exit_with_parent() -> None:
    """Exit this child as soon as the parent process is gone (even after ``kill -9``)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="coolchic-parent-watch", daemon=True).start()


def _worker_main(conn: multiprocessing.connection.Connection) -> None:
    """Body of a worker child: run the jobs the parent sends until it sends ``None``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _exit_with_parent()
    handler = _PipeLogHandler(conn)
    root = logging.getLogger("coolchic")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG)
    root.propagate = False
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        job_id, request = message
        handler.job_id = job_id

        def progress(event: ProgressEvent, job_id: JobId = job_id) -> None:
            conn.send(("progress", job_id, event))

        result = run_job(request, progress=progress)
        conn.send(("result", job_id, result))
        handler.job_id = None
