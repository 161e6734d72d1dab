"""Where jobs run: on this machine (the default) or on a Dask distributed cluster.

:func:`create_executor` picks one from the ``--scheduler`` option. The Dask executor lives in
the optional ``[distributed]`` extra and is imported only when asked for, so the default path
needs neither dask nor a network.
"""

from __future__ import annotations

from coolchic.errors import ExecutorError
from coolchic.executors.base import Executor

__all__ = ["DISTRIBUTED_INSTALL_HINT", "Executor", "ExecutorError", "create_executor"]

#: What to install for ``--scheduler``.
DISTRIBUTED_INSTALL_HINT = 'pip install "coolchic[distributed]"'

#: Default seconds a job may wait for a worker with the resources it asks for.
DEFAULT_RESOURCE_TIMEOUT_S = 300.0


def create_executor(
    scheduler: str | None = None,
    *,
    jobs: int | None = None,
    gpus_per_job: float = 0.0,
    resource_timeout_s: float = DEFAULT_RESOURCE_TIMEOUT_S,
) -> Executor:
    """An executor for ``scheduler``: ``None`` = worker processes on this machine,
    ``"local"`` = a local Dask cluster of ``jobs`` workers, else a Dask scheduler address.

    Args:
        jobs: jobs at once (local: worker processes, default 1; Dask: at most this many in
            flight, default as many as the cluster has worker threads).
        gpus_per_job: Dask only: the ``GPU`` resource each job needs (0 = none).
        resource_timeout_s: Dask only: a job that no worker can take for this long fails.

    Raises:
        ExecutorError: Dask asked for but not installed, or the scheduler is unreachable.
    """
    if scheduler is None:
        if gpus_per_job:
            raise ExecutorError("--gpus-per-job needs --scheduler (a Dask cluster)")
        from coolchic.executors.local import LocalExecutor

        return LocalExecutor(jobs or 1)
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise ExecutorError(
            f"--scheduler {scheduler} needs Dask distributed, which is not installed: "
            f"run {DISTRIBUTED_INSTALL_HINT}"
        ) from None
    from coolchic.executors.dask_cluster import DaskExecutor

    return DaskExecutor.connect(
        scheduler, jobs=jobs, gpus_per_job=gpus_per_job, resource_timeout_s=resource_timeout_s
    )
