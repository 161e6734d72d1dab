"""What the batch processor and the daemon need from whatever runs their jobs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Self

if TYPE_CHECKING:
    from types import TracebackType

    from coolchic.jobs.types import JobId, JobMessage, JobRequest


class Executor(Protocol):
    """Runs :class:`~coolchic.jobs.types.JobRequest` values and reports on them.

    The caller submits while :attr:`free` is positive and calls :meth:`wait` to collect
    progress events and results; every submitted job ends with exactly one
    :class:`~coolchic.jobs.types.JobFinished` (unless it is cancelled), whatever happens to the
    worker that ran it.
    """

    @property
    def running(self) -> dict[JobId, JobRequest]:
        """The jobs submitted and not yet reported finished, by id."""
        ...

    @property
    def free(self) -> int:
        """How many more jobs can be submitted now."""
        ...

    def submit(self, job_id: JobId, request: JobRequest) -> None:
        """Start a job (a bad input may come back at once as a failed result)."""
        ...

    def wait(self, timeout: float) -> list[JobMessage]:
        """Messages of the running jobs, waiting up to ``timeout`` seconds for the first."""
        ...

    def cancel(self, job_id: JobId) -> JobRequest | None:
        """Stop a job; no output of it will be written. Returns its request if it ran."""
        ...

    def pid_of(self, job_id: JobId) -> int | None:
        """The local process running the job, when there is one (for the journal)."""
        ...

    def close(self) -> None:
        """Stop everything and release the workers."""
        ...

    def __enter__(self) -> Executor: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...


class ExecutorBase:
    """What the executors share: ``with executor:`` closes it on the way out."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop everything and release the workers."""
        raise NotImplementedError
