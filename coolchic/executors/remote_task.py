"""The stateless form of a job, for remote workers: frame samples in, stream and report out.

Kept apart from :mod:`coolchic.executors.dask_cluster` because none of it needs Dask: the task
types are what a worker unpickles and the coordinator writes back, so they must import (and be
tested) without the ``[distributed]`` extra; and the executor module stays short.
"""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coolchic.errors import CoolchicError
from coolchic.io import FrameSamples
from coolchic.jobs.run import InputIdentity, encode_frame, job_report, write_outputs
from coolchic.jobs.settings import EncodeSettings
from coolchic.jobs.types import (
    ErrorKind,
    JobRequest,
    JobResult,
    classify_error,
    describe_error,
)
from coolchic.train.progress import ProgressCallback, ignore_progress

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncodeTask:
    """A self-contained encode for a remote worker: the first frame's samples and the settings.

    It needs no shared file system: the coordinator reads the input and writes the outputs, the
    worker only computes, so running a task twice (after a lost worker) is always safe.
    """

    label: str
    samples: FrameSamples
    settings: EncodeSettings
    #: The coordinator's checkpoint path: resumable from any worker that sees the same path.
    checkpoint_path: Path | None = None


@dataclass(frozen=True)
class TaskOutcome:
    """What a worker sends back: the stream and the codec's report, or a classified error."""

    bitstream: bytes | None = None
    report: dict[str, Any] | None = None
    error: str | None = None
    error_kind: ErrorKind | None = None
    detail: str | None = None
    seconds: float = 0.0


def run_encode_task(
    task: EncodeTask, *, progress: ProgressCallback = ignore_progress
) -> TaskOutcome:
    """Run an :class:`EncodeTask`; a failure comes back classified, never as an exception."""
    started = time.perf_counter()
    try:
        encoded = encode_frame(
            task.samples.to_frame(),
            task.settings,
            progress=progress,
            label=task.label,
            checkpoint_path=task.checkpoint_path,
        )
        if task.checkpoint_path is not None:  # the stream is made: no worker needs it again
            with contextlib.suppress(OSError):
                task.checkpoint_path.unlink(missing_ok=True)
    except Exception as error:
        logger.debug("%s: encode failed", task.label, exc_info=True)
        return TaskOutcome(
            error=describe_error(error),
            error_kind=classify_error(error),
            detail=None if isinstance(error, CoolchicError) else traceback.format_exc(),
            seconds=time.perf_counter() - started,
        )
    return TaskOutcome(
        bitstream=encoded.bitstream,
        report=encoded.report,
        seconds=time.perf_counter() - started,
    )


def finish_remote_job(
    request: JobRequest, source: InputIdentity, outcome: TaskOutcome
) -> JobResult:
    """On the coordinator: write a remote job's outputs atomically (report last)."""
    if outcome.bitstream is None or outcome.report is None:
        return JobResult(
            request.input_path,
            "failed",
            error=outcome.error or "the worker returned no result",
            error_kind=outcome.error_kind or "transient",
            detail=outcome.detail,
            seconds=outcome.seconds,
        )
    try:
        report = job_report(
            source, request.cool_path, outcome.bitstream, outcome.report, request.settings
        )
        request.cool_path.parent.mkdir(parents=True, exist_ok=True)
        write_outputs(request.cool_path, outcome.bitstream, request.report_path, report)
    except OSError as error:
        return JobResult(
            request.input_path,
            "failed",
            error=describe_error(error),
            error_kind="transient",
            seconds=outcome.seconds,
        )
    return JobResult(request.input_path, "done", report=report, seconds=outcome.seconds)
