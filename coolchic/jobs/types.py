"""The vocabulary of jobs: ids, requests, results, progress messages and error kinds.

Plain data, so that a request and its result cross process boundaries (local worker processes,
Dask workers), and so that executors and listeners can name them without importing the code
that runs a job.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NewType, Protocol

from coolchic.errors import BitstreamError, CoolchicError, EncodingError, InputError
from coolchic.resources import ResourceError

if TYPE_CHECKING:
    from coolchic.jobs.settings import EncodeSettings
    from coolchic.train.progress import ProgressEvent

ErrorKind = Literal["permanent", "transient"]
JobStatus = Literal["done", "skipped", "failed"]
JobId = NewType("JobId", int)


@dataclass(frozen=True)
class JobRequest:
    """What a worker needs to run a job; plain data, so it crosses process boundaries."""

    input_path: Path
    cool_path: Path
    report_path: Path
    settings: EncodeSettings
    skip_if_up_to_date: bool = True
    #: Where the training state is checkpointed, so that a re-run of the job resumes it.
    checkpoint_path: Path | None = None
    #: The rate point's tag (``l1e-3``, ``p36``) when an input has several; None with one.
    point: str | None = None

    @property
    def label(self) -> str:
        return point_label(self.input_path, self.point)


def point_label(input_path: Path, point: str | None) -> str:
    """The input's name, and its point's tag (``l1e-3``, ``p36``) when it has several."""
    return input_path.name if point is None else f"{input_path.name} ({point})"


@dataclass(frozen=True)
class JobResult:
    """The outcome of a job: ``done`` (encoded), ``skipped`` (up to date) or ``failed``."""

    input_path: Path
    status: JobStatus
    report: dict[str, Any] | None = None
    error: str | None = None
    error_kind: ErrorKind | None = None
    detail: str | None = None
    seconds: float = 0.0
    #: The rate point's tag, as in :attr:`JobRequest.point`.
    point: str | None = None

    @property
    def bpp(self) -> float | None:
        return None if self.report is None else self.report.get("bpp")

    @property
    def psnr_db(self) -> float | None:
        """PSNR of the reconstruction: ``psnr_yuv`` (YUV) or ``psnr_rgb`` (PNG)."""
        if self.report is None:
            return None
        return self.report.get("psnr_rgb", self.report.get("psnr_yuv"))

    def as_dict(self) -> dict[str, Any]:
        """The JSON line of ``batch --json``: status, then the report or the error."""
        payload: dict[str, Any] = {"status": self.status, "input": str(self.input_path)}
        if self.report is not None:
            payload.update(self.report)
            payload["input"] = str(self.input_path)
        if self.status == "failed":
            payload.update(error=self.error, error_kind=self.error_kind)
        if self.point is not None:
            payload["point"] = self.point
        payload["seconds"] = round(self.seconds, 3)
        return payload

    def summary(self) -> str:
        """What happened, without the file name: "encoded, 0.1234 bpp, 38.20 dB, 2.1 s"."""
        if self.status == "failed":
            return f"failed ({self.error_kind}): {self.error}"
        parts = ["encoded" if self.status == "done" else "up to date, not encoded again"]
        if self.bpp is not None:
            parts.append(f"{self.bpp:.4f} bpp")
        if self.psnr_db is not None:
            parts.append(f"{self.psnr_db:.2f} dB")
        if self.status == "done":
            parts.append(f"{self.seconds:.1f} s")
        return ", ".join(parts)

    def describe(self) -> str:
        """One plain-text line for logs."""
        return f"{point_label(self.input_path, self.point)}: {self.summary()}"


def classify_error(error: BaseException) -> ErrorKind:
    """Permanent when the input is at fault (retrying gives the same), transient otherwise.

    Permanent: :class:`InputError` (bad name, truncated, unsupported), :class:`BitstreamError`,
    :class:`EncodingError` (a seeded encode diverges the same way again) and unexpected
    exceptions (bugs). Transient: ``OSError`` (writing outputs, network file systems),
    ``MemoryError`` and torch's out-of-memory errors, and other coolchic errors such as an
    unavailable device.
    """
    if isinstance(error, InputError | BitstreamError | EncodingError | ResourceError):
        return "permanent"
    if isinstance(error, OSError | MemoryError | CoolchicError):
        return "transient"
    if "OutOfMemory" in type(error).__name__ or "out of memory" in str(error).lower():
        return "transient"
    return "permanent"


def describe_error(error: BaseException) -> str:
    """One line that names what failed, for reports, logs and ``<name>.error.json``."""
    if isinstance(error, CoolchicError):
        return str(error)
    if isinstance(error, OSError):
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror or error}"
    if isinstance(error, MemoryError):
        return "out of memory"
    return f"{type(error).__name__}: {error}"


# --------------------------------------------------------------------------------------------
# What executors report


@dataclass(frozen=True)
class JobProgress:
    """A progress event of a running job, as an executor's ``wait`` reports it."""

    job_id: JobId
    event: ProgressEvent


@dataclass(frozen=True)
class JobFinished:
    """The result of a job; a worker that died mid-job gives a transient failure."""

    job_id: JobId
    result: JobResult


JobMessage = JobProgress | JobFinished


class JobListener(Protocol):
    """Who follows jobs as they run (the CLI's progress display, the daemon's logs)."""

    def job_started(self, job_id: JobId, label: str) -> None: ...

    def job_progress(self, job_id: JobId, event: ProgressEvent) -> None: ...

    def job_finished(self, job_id: JobId, result: JobResult) -> None: ...


class SilentListener:
    """A listener that ignores everything."""

    def job_started(self, job_id: JobId, label: str) -> None:
        del job_id, label

    def job_progress(self, job_id: JobId, event: ProgressEvent) -> None:
        del job_id, event

    def job_finished(self, job_id: JobId, result: JobResult) -> None:
        del job_id, result
