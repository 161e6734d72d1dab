"""``coolchic batch``: plan the jobs of a list of inputs, then run them on an executor.

:func:`plan_batch` pairs each input with its outputs and fails at once what cannot run (refused
inputs, name clashes, bad names); :func:`run_batch` drives an executor
(:mod:`coolchic.executors`) over the rest, within the memory budget. It sits above both
:mod:`coolchic.jobs` and the executors, and only the CLI imports it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from coolchic.errors import InputError
from coolchic.jobs.inputs import InputFile, checkpoint_path, output_paths
from coolchic.jobs.run import frame_size, job_memory_estimate, precheck_input, up_to_date_report
from coolchic.jobs.settings import EncodeSettings, rate_points
from coolchic.jobs.types import (
    JobId,
    JobListener,
    JobProgress,
    JobRequest,
    JobResult,
    SilentListener,
)
from coolchic.resources import MemoryGate, ResourceError, refuse_if_too_big

if TYPE_CHECKING:
    from coolchic.executors.base import Executor

logger = logging.getLogger(__name__)


@dataclass
class _Planned:
    """One input of the batch: its request once planned, its result once known (or refused)."""

    job_id: JobId
    item: InputFile
    point: str | None = None
    request: JobRequest | None = None
    result: JobResult | None = None


@dataclass
class BatchPlan:
    """The inputs of a batch with their outputs; inputs that cannot run are failed already."""

    items: list[_Planned] = field(default_factory=list)

    @property
    def results(self) -> list[JobResult]:
        return [p.result for p in self.items if p.result is not None]


def plan_batch(
    inputs: Sequence[InputFile],
    output_root: Path,
    settings: EncodeSettings | Sequence[EncodeSettings],
    *,
    force: bool,
) -> BatchPlan:
    """Pair each input with its output paths; refused inputs and name clashes fail here.

    With several settings (one per λ or target), each input gets one job per rate point, named
    ``<stem>.l<λ>.cool`` or ``<stem>.p<dB>.cool`` (see :func:`~coolchic.jobs.inputs.output_paths`),
    in input order and point order within an input.
    """
    points = rate_points([settings] if isinstance(settings, EncodeSettings) else list(settings))
    plan = BatchPlan()
    owners: dict[Path, Path] = {}
    for item in inputs:
        for point, point_settings in points:
            planned = _Planned(JobId(len(plan.items)), item, point=point)
            plan.items.append(planned)
            planned.result = _plan_job(planned, output_root, point_settings, owners, force=force)
    return plan


def _plan_job(
    planned: _Planned,
    output_root: Path,
    settings: EncodeSettings,
    owners: dict[Path, Path],
    *,
    force: bool,
) -> JobResult | None:
    """Set ``planned.request``; return the job's result when it is known without running it
    (refused, or skipped as up to date)."""
    item, point = planned.item, planned.point
    if item.refused is not None:
        return _refused(item.path, f"refused: {item.refused}", point)
    try:
        cool, report = output_paths(item.relative, output_root, point)
    except InputError as error:
        return _refused(item.path, str(error), point)
    owner = owners.setdefault(cool.resolve(), item.path)
    if owner != item.path:
        return _refused(item.path, f"its output {cool} is already the output of {owner}", point)
    planned.request = JobRequest(
        item.path,
        cool,
        report,
        settings,
        skip_if_up_to_date=False,
        checkpoint_path=checkpoint_path(output_root, item.relative, point),
        point=point,
    )
    try:
        precheck_input(item.path)
    except InputError as error:
        return _refused(item.path, str(error), point)
    if not force:
        existing = up_to_date_report(item.path, cool, report, settings)
        if existing is not None:
            return JobResult(item.path, "skipped", report=existing, point=point)
    return None


def _refused(path: Path, reason: str, point: str | None = None) -> JobResult:
    return JobResult(path, "failed", error=reason, error_kind="permanent", point=point)


def run_batch(
    plan: BatchPlan,
    executor: Executor,
    *,
    listener: JobListener | None = None,
    memory: int | None = None,
) -> list[JobResult]:
    """Run the planned jobs on ``executor``, as many at once as it has room for, in input
    order; failures never stop it.

    With a ``memory`` budget (local encodes), a job starts only when its estimated peak fits
    beside those running (:class:`~coolchic.resources.MemoryGate`); one that can never fit
    fails at once.

    Returns one result per job (per input, or per rate point of each input), in input order.
    """
    gate = MemoryGate(memory)
    listener = listener or SilentListener()
    for planned in plan.items:
        if planned.result is not None:
            listener.job_finished(planned.job_id, planned.result)
            logger.info("%s", planned.result.describe())
    pending = deque(p for p in plan.items if p.result is None and p.request is not None)
    by_id = {p.job_id: p for p in plan.items}
    while pending or executor.running:
        _start_jobs(pending, executor, gate, listener, memory)
        for message in executor.wait(0.5):
            if isinstance(message, JobProgress):
                listener.job_progress(message.job_id, message.event)
                continue
            planned = by_id[message.job_id]
            result = dataclasses.replace(message.result, point=planned.point)
            planned.result = result
            gate.release(message.job_id)
            listener.job_finished(message.job_id, result)
            level = logging.WARNING if result.status == "failed" else logging.INFO
            logger.log(level, "%s", result.describe())
    folders = {p.request.checkpoint_path.parent for p in plan.items if _checkpointed(p)}
    for folder in folders:  # the hidden checkpoint folder goes once it is empty
        with contextlib.suppress(OSError):
            folder.rmdir()
    return [p.result for p in plan.items if p.result is not None]


def _start_jobs(
    pending: deque[_Planned],
    executor: Executor,
    gate: MemoryGate,
    listener: JobListener,
    memory: int | None,
) -> None:
    """Submit pending jobs in input order while the executor has room and the next one fits
    beside those running; one that can never fit fails here."""
    while pending and executor.free > 0:
        planned = pending[0]
        assert planned.request is not None
        estimate = job_memory_estimate(planned.request.input_path, planned.request.settings)
        size = frame_size(planned.request.input_path) or (0, 0)
        try:
            refuse_if_too_big(*size, estimate, memory)
        except ResourceError as error:
            pending.popleft()
            planned.result = _refused(planned.request.input_path, str(error), planned.point)
            listener.job_finished(planned.job_id, planned.result)
            logger.warning("%s", planned.result.describe())
            continue
        if not gate.admits(estimate):
            return  # waits for a running encode to end
        pending.popleft()
        gate.hold(planned.job_id, estimate)
        executor.submit(planned.job_id, planned.request)
        listener.job_started(planned.job_id, planned.request.label)
        logger.debug("%s: started", planned.request.label)


def _checkpointed(planned: _Planned) -> bool:
    return planned.request is not None and planned.request.checkpoint_path is not None
