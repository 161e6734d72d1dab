"""What the daemon is told (:class:`WatchConfig`) and the names of the folders and files it keeps.

Light on purpose: the CLI imports it to build its options without loading the service.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from coolchic.errors import CoolchicError
from coolchic.executors import DEFAULT_RESOURCE_TIMEOUT_S

if TYPE_CHECKING:
    from coolchic.jobs.settings import EncodeSettings
    from coolchic.ratecontrol import RateTarget

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
    #: Several rate points per file: the λ of each (``settings`` holds the first); empty or
    #: one λ: one point, at ``settings.lmbda``.
    lmbdas: tuple[float, ...] = ()
    #: Rate control: one point per target (``--target-psnr``/``--target-bpp``), instead of λ.
    targets: tuple[RateTarget, ...] = ()
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
    def points(self) -> list[tuple[str | None, EncodeSettings]]:
        """(tag, settings) of each rate point of a file; the tag is None with one point."""
        import dataclasses

        from coolchic.jobs.settings import rate_points

        if self.targets:
            return rate_points(
                [dataclasses.replace(self.settings, target=target) for target in self.targets]
            )
        lmbdas = self.lmbdas or (self.settings.lmbda,)
        return rate_points([dataclasses.replace(self.settings, lmbda=lmbda) for lmbda in lmbdas])

    @property
    def done_dir(self) -> Path:
        return self.inbox / DONE_DIR_NAME

    @property
    def failed_dir(self) -> Path:
        return self.inbox / FAILED_DIR_NAME

    def retry_delay_s(self, attempts: int) -> float:
        """Exponential backoff: ``retry_s`` after the first attempt, doubling, capped."""
        return min(self.retry_cap_s, self.retry_s * 2 ** max(0, attempts - 1))
