"""Memory an encode needs and memory this machine has, so that no job ends in an OOM kill.

:func:`estimate_encode_bytes` predicts the peak resident memory of one encode from the frame
size and the decoder, before anything is read or allocated. It is a line fitted to peaks
measured with ``/usr/bin/time -v`` (BENCHMARKS.md, "Encoder memory"): a fixed part (Python,
torch, the compiler of large frames) and bytes per pixel that grow with the synthesis width
(its activations are kept for the backward pass, one float a channel and a pixel, as are the
upsampled stack and the Adam moments of the latents) and with the inter-feature values.

:func:`memory_budget` is what the jobs of this process may use together: ``--memory-limit``
when given, else the smaller of the cgroup's limit (containers, systemd ``MemoryMax=``) and the
machine's RAM, less a reserve for everything else. A job whose estimate exceeds the whole budget
is refused before any work (:class:`ResourceError`, permanent); the daemon and ``batch`` start a
job only when the estimates of the running ones plus its own fit (see ``docs/deploy.md``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from coolchic.decode_memory import format_bytes
from coolchic.errors import CoolchicError
from coolchic.model.config import ModelConfig

#: Resident memory of an encode before its frame counts (interpreter, torch, numpy, inductor).
BASE_BYTES: Final = 600 << 20
#: Bytes a pixel costs with a synthesis of ``SMALL_WIDTH`` channels in all, and per channel more.
SMALL_BYTES_PER_PIXEL: Final = 420.0
BYTES_PER_PIXEL_PER_CHANNEL: Final = 8.0
SMALL_WIDTH: Final = 11
#: Bytes a pixel costs per inter-feature value (Cool-chic 5's IFCE): its planes at full
#: resolution and their copies in the ARM's padded layout, with their gradients. Fitted so that
#: the estimate is 10-20 % above the peaks of the small decoder with 2 values and 3 hyper grids
#: at 416x240, 1152x768 and 1920x1080 (BENCHMARKS.md, "Encoder memory" 2026-12-04).
IFCE_BYTES_PER_PIXEL_PER_FEATURE: Final = 192.0
#: Left to the system and the daemon itself when the budget is the machine's memory.
RESERVE_BYTES: Final = 1 << 30

_CGROUP_V2 = Path("/sys/fs/cgroup/memory.max")
_CGROUP_V1 = Path("/sys/fs/cgroup/memory/memory.limit_in_bytes")
_MEMINFO = Path("/proc/meminfo")


class ResourceError(CoolchicError):
    """A job cannot fit in the memory this machine (or ``--memory-limit``) allows."""


def estimate_encode_bytes(width: int, height: int, config: ModelConfig) -> int:
    """Predicted peak resident bytes of encoding a ``width`` x ``height`` frame with ``config``.

    Increasing in the pixel count, the synthesis width and the inter-feature values (tests
    check them).
    """
    channels = sum(layer.out_channels for layer in config.synthesis)
    per_pixel = (
        SMALL_BYTES_PER_PIXEL
        + BYTES_PER_PIXEL_PER_CHANNEL * max(0, channels - SMALL_WIDTH)
        + IFCE_BYTES_PER_PIXEL_PER_FEATURE * config.ifce_features
    )
    return int(BASE_BYTES + per_pixel * width * height)


def machine_memory() -> int | None:
    """The memory this process may use at most: cgroup limit or RAM, whichever is smaller."""
    candidates = [_read_cgroup_limit(), _meminfo("MemTotal")]
    known = [value for value in candidates if value is not None]
    return min(known) if known else None


def memory_budget(limit: int | None = None) -> int | None:
    """Bytes the encodes of this process may use together (None: unknown, no gating)."""
    if limit is not None:
        return limit
    total = machine_memory()
    return None if total is None else max(total - RESERVE_BYTES, total // 2)


def check_fits(width: int, height: int, config: ModelConfig, budget: int | None) -> int:
    """Refuse a frame whose encode cannot fit in ``budget``; return its estimate.

    Raises:
        ResourceError: the estimate exceeds the budget.
    """
    estimate = estimate_encode_bytes(width, height, config)
    refuse_if_too_big(width, height, estimate, budget)
    return estimate


def refuse_if_too_big(width: int, height: int, estimate: int | None, budget: int | None) -> None:
    """Raise :class:`ResourceError` when ``estimate`` exceeds the whole ``budget``."""
    if estimate is not None and budget is not None and estimate > budget:
        raise ResourceError(
            f"encoding this {width}x{height} frame needs about {format_bytes(estimate)} of "
            f"memory, more than the {format_bytes(budget)} this machine allows (--memory-limit "
            "raises the budget; a smaller frame or crop fits)"
        )


def _read_cgroup_limit() -> int | None:
    for path in (_CGROUP_V2, _CGROUP_V1):
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < (1 << 60):  # v1 says "unlimited" with a huge number
            return int(text)
    return None


def _meminfo(field: str) -> int | None:
    try:
        for line in _MEMINFO.read_text().splitlines():
            name, _, rest = line.partition(":")
            if name == field:
                return int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class MemoryGate:
    """Admits a job while the estimates of the running ones plus its own fit the budget.

    With nothing running a job is always admitted (one that cannot fit at all is refused
    before, by :func:`check_fits`), so the queue never stalls; jobs wait their turn instead of
    running side by side into the OOM killer.
    """

    def __init__(self, budget: int | None) -> None:
        self.budget = budget
        self._held: dict[object, int] = {}

    @property
    def held(self) -> int:
        return sum(self._held.values())

    def admits(self, estimate: int | None) -> bool:
        if self.budget is None or estimate is None or not self._held:
            return True
        return self.held + estimate <= self.budget

    def hold(self, key: object, estimate: int | None) -> None:
        if estimate is not None:
            self._held[key] = estimate

    def release(self, key: object) -> None:
        self._held.pop(key, None)
