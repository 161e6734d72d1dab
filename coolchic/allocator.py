"""Keep glibc from returning large freed blocks to the kernel between training steps.

glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh ``mmap``
and gives it back with ``munmap`` when freed. A training step at 1920x1080 allocates and frees
hundreds of such tensors, so every step faults in, and the kernel zeroes, gigabytes of new
pages: at commit 6c4fd7d that was more system time than compute time, and serving them from
the heap instead made the step 2.4x faster (4.09 s → 1.67 s, BENCHMARKS.md, "training step").

:func:`keep_freed_memory` turns mmap off for later allocations and raises the trim threshold,
so freed blocks are reused; :func:`release_freed_memory` hands the unused heap back at the
end of an encode. Both do nothing where the C library is not glibc (macOS, Windows, musl).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import sys

logger = logging.getLogger(__name__)

# mallopt parameters, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
#: Free heap above this stays with the process only up to this size (the largest C int).
_TRIM_THRESHOLD = 2**31 - 1


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018  (raises AttributeError outside glibc)
    except (OSError, AttributeError):
        return None
    return libc


@functools.cache
def keep_freed_memory() -> bool:
    """Serve large allocations from the heap and keep freed blocks for reuse (once a process).

    Returns:
        True when the settings were applied (glibc), False elsewhere.
    """
    libc = _glibc()
    if libc is None:
        return False
    applied = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(_TRIM_THRESHOLD))
    )
    logger.debug("glibc allocator: mmap off, trim threshold 2 GiB (%s)", applied)
    return applied


def release_freed_memory() -> None:
    """Return the heap's free pages to the kernel (after an encode, before the next job)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
