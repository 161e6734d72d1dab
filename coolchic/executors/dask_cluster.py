"""Jobs on a Dask distributed cluster (the optional ``[distributed]`` extra).

The coordinator (``coolchic batch`` or ``coolchic watch``) keeps every file-system concern: it
checks whether an output is up to date, reads the input's first frame, and writes the outputs
atomically when the result comes back. Workers are stateless: a task carries the frame's
samples and the settings (:class:`~coolchic.executors.remote_task.EncodeTask`) and returns
the stream and the codec's report. So no shared file system is needed, and when a worker dies
mid-encode, Dask runs the task again elsewhere without any risk of a half-written or
duplicated output.

Progress travels as Dask worker events on a topic private to this executor, throttled to one
per :data:`PROGRESS_PERIOD_S` per job. A job that no worker can take (no worker at all, or
none with the ``GPU`` resource it asks for) fails after ``resource_timeout_s`` instead of
waiting forever.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import queue
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from distributed import Client, Future, LocalCluster, get_worker
from distributed.client import FutureCancelledError

from coolchic.errors import ExecutorError
from coolchic.executors.base import ExecutorBase
from coolchic.executors.remote_task import (
    EncodeTask,
    TaskOutcome,
    finish_remote_job,
    run_encode_task,
)
from coolchic.jobs.run import InputIdentity, read_input, up_to_date_report
from coolchic.jobs.settings import usable_cpus
from coolchic.jobs.types import (
    JobFinished,
    JobId,
    JobMessage,
    JobProgress,
    JobRequest,
    JobResult,
    classify_error,
    describe_error,
)
from coolchic.train.progress import ProgressEvent

logger = logging.getLogger(__name__)

#: Minimum seconds between two progress events of a job sent by a worker.
PROGRESS_PERIOD_S = 1.0
#: Seconds the coordinator trusts its last view of the cluster's workers.
WORKERS_TTL_S = 1.0
#: The Dask resource that ``--gpus-per-job`` asks for (``dask worker --resources GPU=1``).
GPU_RESOURCE = "GPU"


def encode_on_worker(task: EncodeTask, topic: str, key: str) -> TaskOutcome:
    """Body of a Dask task: encode, sending throttled progress events to ``topic``.

    Torch threads: the ``--threads`` of the coordinator if given, else this worker machine's
    CPUs shared among the worker's task threads (Dask starts workers with one OpenMP thread).
    """
    worker = get_worker()
    settings = task.settings
    if settings.threads is None:
        threads = max(1, usable_cpus() // max(1, worker.state.nthreads))
        settings = dataclasses.replace(settings, threads=threads)
    last_sent = -PROGRESS_PERIOD_S

    def progress(event: ProgressEvent) -> None:
        nonlocal last_sent
        now = time.monotonic()
        if event.kind == "progress" and now - last_sent < PROGRESS_PERIOD_S:
            return
        last_sent = now
        with contextlib.suppress(Exception):  # progress must never fail an encode
            worker.log_event(topic, {"key": key, "event": dataclasses.asdict(event)})

    return run_encode_task(dataclasses.replace(task, settings=settings), progress=progress)


@dataclass
class _RemoteJob:
    """A job as the coordinator follows it: its task's key (its progress events name it), and
    its task, or its result once known."""

    request: JobRequest
    key: str
    identity: InputIdentity | None = None
    """The input as read here (its path, sha256 and size go into the report)."""
    future: Future[TaskOutcome] | None = None
    result: JobResult | None = None
    unplaceable_since: float | None = None
    """Since when no worker could take the task (None while some worker can)."""


class DaskExecutor(ExecutorBase):
    """Runs jobs as Dask tasks; see the module docstring.

    Args:
        client: a connected Dask client.
        cluster: the local cluster behind ``client`` when this executor started it (closed
            with the executor).
        jobs: at most this many jobs in flight; ``None``: as many as the cluster has worker
            threads (at least one).
        gpus_per_job: the ``GPU`` resource each task needs; 0 for none.
        resource_timeout_s: how long a job may wait while no worker can take it.
    """

    def __init__(
        self,
        client: Client,
        *,
        cluster: LocalCluster | None = None,
        jobs: int | None = None,
        gpus_per_job: float = 0.0,
        resource_timeout_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if jobs is not None and jobs < 1:
            raise ValueError(f"jobs must be at least 1, found {jobs}")
        if gpus_per_job < 0 or resource_timeout_s < 0:
            raise ValueError("gpus_per_job and resource_timeout_s must be >= 0")
        self._client = client
        self._cluster = cluster
        self._max_jobs = jobs
        self._resources = {GPU_RESOURCE: gpus_per_job} if gpus_per_job else None
        self._resource_timeout_s = resource_timeout_s
        self._clock = clock
        self._jobs: dict[JobId, _RemoteJob] = {}
        self._job_of_key: dict[str, JobId] = {}
        self._events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._topic = f"coolchic-progress-{uuid.uuid4().hex}"
        self._worker_cache: tuple[float, list[dict[str, Any]]] | None = None
        client.subscribe_topic(self._topic, self._events.put)

    @classmethod
    def connect(
        cls,
        scheduler: str,
        *,
        jobs: int | None = None,
        gpus_per_job: float = 0.0,
        resource_timeout_s: float = 300.0,
    ) -> DaskExecutor:
        """Connect to the scheduler at ``scheduler``, or start a local cluster for ``"local"``
        (``jobs`` worker processes of one thread each).

        Raises:
            ExecutorError: the scheduler cannot be reached.
        """
        cluster = None
        try:
            if scheduler == "local":
                cluster = LocalCluster(
                    n_workers=jobs or 1,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                )
                client = Client(cluster)
            else:
                client = Client(scheduler)  # waits distributed.comm.timeouts.connect (30 s)
        except (OSError, TimeoutError, ValueError) as error:
            if cluster is not None:
                cluster.close()
            raise ExecutorError(
                f"cannot reach the Dask scheduler at {scheduler}: {error}"
            ) from None
        logger.info(
            "Dask scheduler %s: %d worker(s)", client.scheduler.address, len(cls._workers(client))
        )
        return cls(
            client,
            cluster=cluster,
            jobs=jobs,
            gpus_per_job=gpus_per_job,
            resource_timeout_s=resource_timeout_s,
        )

    # ------------------------------------------------------------------------ executor API

    @property
    def running(self) -> dict[JobId, JobRequest]:
        return {job_id: job.request for job_id, job in self._jobs.items()}

    @property
    def free(self) -> int:
        if self._max_jobs is not None:
            capacity = self._max_jobs
        else:
            capacity = max(1, sum(int(w.get("nthreads", 1)) for w in self._cluster_workers()))
        return capacity - len(self._jobs)

    def submit(self, job_id: JobId, request: JobRequest) -> None:
        """Read the input here and send its first frame to the cluster."""
        if job_id in self._jobs:
            raise ValueError(f"job {job_id} is already running")
        key = f"coolchic-encode-{job_id}-{uuid.uuid4().hex[:12]}"
        job = _RemoteJob(request, key)
        self._jobs[job_id] = job
        try:
            if request.skip_if_up_to_date:
                report = up_to_date_report(
                    request.input_path, request.cool_path, request.report_path, request.settings
                )
                if report is not None:
                    job.result = JobResult(request.input_path, "skipped", report=report)
                    return
            frame, job.identity = read_input(request.input_path)
        except Exception as error:
            job.result = JobResult(
                request.input_path,
                "failed",
                error=describe_error(error),
                error_kind=classify_error(error),
            )
            return
        task = EncodeTask(
            request.label, frame.to_samples(), request.settings, request.checkpoint_path
        )
        self._job_of_key[key] = job_id
        job.future = self._client.submit(
            encode_on_worker,
            task,
            self._topic,
            key,
            key=key,
            pure=False,
            resources=self._resources,
        )

    def wait(self, timeout: float) -> list[JobMessage]:
        deadline = self._clock() + timeout
        while True:
            messages = self._collect()
            remaining = deadline - self._clock()
            if messages or not self._jobs or remaining <= 0:
                return messages
            time.sleep(min(0.05, remaining))

    def cancel(self, job_id: JobId) -> JobRequest | None:
        """Forget the job; a task already running finishes on its worker, its result unused."""
        job = self._jobs.pop(job_id, None)
        if job is None:
            return None
        self._job_of_key.pop(job.key, None)
        if job.future is not None:
            job.future.cancel()
        return job.request

    def pid_of(self, job_id: JobId) -> int | None:
        del job_id
        return None  # the job runs on another machine, or at least in a Dask worker

    def close(self) -> None:
        for job_id in list(self._jobs):
            self.cancel(job_id)
        with contextlib.suppress(Exception):
            self._client.unsubscribe_topic(self._topic)
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()

    # ------------------------------------------------------------------------ internals

    def _cluster_workers(self) -> list[dict[str, Any]]:
        """:meth:`_workers`, asked of the scheduler at most once per :data:`WORKERS_TTL_S`."""
        now = self._clock()
        if self._worker_cache is None or now - self._worker_cache[0] > WORKERS_TTL_S:
            self._worker_cache = (now, self._workers(self._client))
        return self._worker_cache[1]

    @staticmethod
    def _workers(client: Client) -> list[dict[str, Any]]:
        """The cluster's workers; none while the scheduler cannot be asked (then jobs fail
        after the resource timeout rather than stopping the coordinator)."""
        try:
            return list(client.scheduler_info(n_workers=-1).get("workers", {}).values())
        except Exception as error:
            logger.warning("cannot ask the Dask scheduler for its workers: %s", error)
            return []

    def _collect(self) -> list[JobMessage]:
        messages: list[JobMessage] = [*self._progress_messages()]
        placeable: bool | None = None  # asked of the scheduler once per call, when needed
        for job_id, job in list(self._jobs.items()):
            if job.result is None and job.future is not None:
                if job.future.done():
                    job.result = self._result_of(job)
                else:
                    if placeable is None:
                        placeable = self._placeable()
                    job.result = self._check_waiting(job, placeable)
            if job.result is not None:
                del self._jobs[job_id]
                self._job_of_key.pop(job.key, None)
                messages.append(JobFinished(job_id, job.result))
        return messages

    def _progress_messages(self) -> list[JobProgress]:
        messages = []
        while True:
            try:
                item = self._events.get_nowait()
            except queue.Empty:
                return messages
            payload = item[1] if isinstance(item, tuple) else item  # (timestamp, message)
            job_id = self._job_of_key.get(payload.get("key"))
            if job_id is not None:
                messages.append(JobProgress(job_id, ProgressEvent(**payload["event"])))

    def _result_of(self, job: _RemoteJob) -> JobResult:
        assert job.future is not None and job.identity is not None
        request = job.request
        try:
            outcome = job.future.result()
        except FutureCancelledError:
            outcome = TaskOutcome(error="the task was cancelled", error_kind="transient")
        except Exception as error:  # KilledWorker (workers died), lost scheduler, ...
            reason = describe_error(error)
            if type(error).__name__ == "KilledWorker":
                reason = f"the Dask workers running it died ({reason})"
            outcome = TaskOutcome(error=reason, error_kind="transient")
        finally:
            job.future.release()
        return finish_remote_job(request, job.identity, outcome)

    def _placeable(self) -> bool:
        """Whether some worker now could run a task (with the resources asked for)."""
        for worker in self._cluster_workers():
            offered = worker.get("resources") or {}
            if all(
                offered.get(name, 0) >= amount for name, amount in (self._resources or {}).items()
            ):
                return True
        return False

    def _check_waiting(self, job: _RemoteJob, placeable: bool) -> JobResult | None:
        """A failed result for a job that no worker could take for too long, else None."""
        if placeable:
            job.unplaceable_since = None
            return None
        now = self._clock()
        if job.unplaceable_since is None:
            job.unplaceable_since = now
            return None
        if now - job.unplaceable_since < self._resource_timeout_s:
            return None
        assert job.future is not None
        job.future.cancel()
        wanted = (
            f"a worker with {GPU_RESOURCE}={self._resources[GPU_RESOURCE]:g}"
            if self._resources
            else "a worker"
        )
        hint = (
            f" (start one with: dask worker {self._client.scheduler.address} --nthreads 1 "
            f"--resources {GPU_RESOURCE}=1)"
            if self._resources
            else ""
        )
        return JobResult(
            job.request.input_path,
            "failed",
            error=f"no Dask worker could take the job for {self._resource_timeout_s:g} s: "
            f"the cluster has no {wanted}{hint}",
            error_kind="transient",
        )
