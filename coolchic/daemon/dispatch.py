"""Journal → workers → outcome: start queued jobs within the memory budget, record results.

A transient failure is retried with a growing delay, up to ``max_attempts``; a permanent one
fails the job at once and sends its input to ``failed/``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from coolchic.daemon.config import CHECKPOINT_DIR_NAME
from coolchic.daemon.context import ServiceContext, printable_name
from coolchic.daemon.journal import JobRow
from coolchic.decode_memory import format_bytes
from coolchic.errors import InputError
from coolchic.jobs.inputs import output_paths, refusal_reason
from coolchic.jobs.run import frame_size, job_memory_estimate
from coolchic.jobs.settings import EncodeSettings
from coolchic.jobs.types import ErrorKind, JobFinished, JobId, JobProgress, JobRequest, JobResult
from coolchic.resources import ResourceError, refuse_if_too_big


class JobDispatch(ServiceContext):
    """Starts the queued jobs on the pool and acts on what the workers report."""

    def _dispatch(self) -> None:
        if self._waiting_for_memory:
            return  # the next job waits until a running one ends (see _handle)
        while self.pool.free > 0:
            row = self.journal.claim()
            if row is None or self._start(row) is False:
                return  # nothing queued, or the next job waits for memory

    def _memory_estimate(self, path: Path, settings: EncodeSettings) -> int | None:
        """The job's predicted peak; raises :class:`ResourceError` if it can never fit."""
        estimate = job_memory_estimate(path, settings)
        refuse_if_too_big(*(frame_size(path) or (0, 0)), estimate, self.memory.budget)
        return estimate

    def _start(self, row: JobRow, point_index: int = 0) -> bool | None:
        """Start ``row``'s job at rate point ``point_index`` (a file with several λ runs its
        points one after the other, see :meth:`_finished`); False when it must wait for memory
        (it is queued again)."""
        path = Path(row.path)
        if not self._unchanged_since_queued(row, path):
            return
        refusal = refusal_reason(path, self.inbox)
        point, settings = self.config.points[point_index]
        try:
            if refusal is not None:
                raise InputError(f"refused: {refusal}")
            cool, report = output_paths(path.relative_to(self.inbox), self.output, point)
            estimate = self._memory_estimate(path, settings)
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
            settings,
            skip_if_up_to_date=True,
            checkpoint_path=self._checkpoint_of(row, point),
            point=point,
        )
        try:
            self.pool.submit(JobId(row.id), request)
        except (OSError, RuntimeError) as error:
            self._after_failure(row, f"cannot start a worker process: {error}", "transient")
            return
        self._point_of[row.id] = point_index
        self.memory.hold(row.id, estimate)
        self.journal.set_worker(row.id, self.pool.pid_of(JobId(row.id)))
        self.listener.job_started(JobId(row.id), printable_name(request.label))
        count = len(self.config.points)
        where = "" if point is None else f", point {point} ({point_index + 1} of {count})"
        self._log(
            logging.INFO,
            "started",
            row,
            f"attempt {row.attempts} of {self.config.max_attempts}{where}",
            attempt=row.attempts,
            point=point,
        )

    def _unchanged_since_queued(self, row: JobRow, path: Path) -> bool:
        """False when the file vanished, cannot be read or changed since it was queued (the
        row is then forgotten, retried or followed again)."""
        try:
            info = os.stat(path)
        except FileNotFoundError:
            self.journal.forget(row.id)
            self._log(logging.WARNING, "vanished", row, "deleted before it was encoded")
            return False
        except OSError as error:
            self._after_failure(row, f"cannot read: {error.strerror or error}", "transient")
            return False
        if (info.st_size, info.st_mtime_ns) != (row.size, row.mtime_ns):
            self.journal.forget(row.id)
            self.tracker.touch(path)
            self._log(logging.INFO, "changed", row, "changed since it was queued; waiting")
            return False
        return True

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
        point_index = self._point_of.pop(row.id, 0)
        if result.status == "failed":
            self._after_failure(
                row, result.error or "unknown error", result.error_kind, detail=result.detail
            )
            return
        report = result.report or {}
        if point_index + 1 < len(self.config.points):
            point = self.config.points[point_index][0]
            self._log(
                logging.INFO,
                "point done",
                row,
                f"{point}: {result.summary()} -> {report.get('output')}",
                point=point,
                bpp=result.bpp,
                psnr_db=result.psnr_db,
            )
            if self._stopping:  # the next points wait for the next start
                self.journal.requeue(row.id)
                self._log(logging.INFO, "requeued", row, "stopping: the other points on restart")
                return
            # Without memory for it now, the row is queued again; when it starts over, the
            # points already written are skipped as up to date.
            self._start(row, point_index + 1)
            return
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

    def _checkpoint_of(self, row: JobRow, point: str | None = None) -> Path:
        """The job's training checkpoint: kept across restarts and retries, by job id (and
        rate point)."""
        suffix = "" if point is None else f".{point}"
        return self.state_dir / CHECKPOINT_DIR_NAME / f"job-{row.id}{suffix}.pt"

    def _finish_failed(
        self, row: JobRow, error: str, kind: ErrorKind | None, *, detail: str | None = None
    ) -> None:
        for point, _ in self.config.points:
            with contextlib.suppress(OSError):
                self._checkpoint_of(row, point).unlink(missing_ok=True)
        self.journal.finish_failed(row.id, error=error, error_kind=kind)
        failed = self.journal.get(row.id)
        assert failed is not None
        self._log(logging.ERROR, "failed", failed, error, error=error, error_kind=kind)
        self._dispose_failed(failed, detail=detail)
