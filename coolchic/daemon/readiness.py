"""When is a file in the inbox complete? When it stopped changing and holds a whole frame.

No file-system event says "the writer is done" (inotify's close-write misses renames and
network writers; other platforms have none), so a file is *ready* when:

1. its size and mtime have not changed, and no event came for it, for ``stable_s`` seconds
   (measured on the monotonic clock, so wall-clock jumps do not matter), and
2. its content can be complete: a YUV file holds at least one frame of the size its name
   gives; a PNG ends with its ``IEND`` chunk; any other file is not empty.

A file that is stable but fails check 2 keeps waiting, up to ``incomplete_timeout_s``; then it
is taken anyway, and the job fails with the reason (truncated, empty) instead of waiting
forever. Files that cannot be read yet (``PermissionError``, as on Windows while a copy runs)
are not ready.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from coolchic.errors import InputError
from coolchic.io import is_png_path, is_yuv_path, parse_yuv_name
from coolchic.io.yuv import frame_size_bytes

PNG_TRAILER = b"\x00\x00\x00\x00IEND\xaeB`\x82"

#: ``incomplete_timeout_s`` defaults to this many times ``stable_s``.
INCOMPLETE_TIMEOUT_FACTOR = 10.0


def minimum_bytes(path: Path) -> int:
    """Smallest size a complete input can have: one frame for a well-named YUV file, else 1."""
    if is_yuv_path(path):
        try:
            fields = parse_yuv_name(path)
        except InputError:
            return 1  # a bad name fails as soon as the file is stable
        return frame_size_bytes(fields.width, fields.height, fields.chroma_format, fields.bit_depth)
    return 1


def looks_complete(path: Path, size: int) -> bool:
    """Content check: enough bytes for one frame, or a PNG's closing chunk."""
    if size < minimum_bytes(path):
        return False
    if is_png_path(path):
        try:
            with open(path, "rb") as handle:
                handle.seek(max(0, size - len(PNG_TRAILER)))
                return handle.read(len(PNG_TRAILER)) == PNG_TRAILER
        except OSError:
            return False
    return True


@dataclass
class _Tracked:
    size: int | None = None
    mtime_ns: int | None = None
    changed_at: float = 0.0


class StabilityTracker:
    """Follows candidate files until they are ready (or gone).

    Args:
        stable_s: how long size and mtime must stay unchanged, with no event.
        clock: monotonic seconds (injectable for tests).
        incomplete_timeout_s: how long a stable file that looks incomplete waits before it is
            taken anyway (default :data:`INCOMPLETE_TIMEOUT_FACTOR` × ``stable_s``).
    """

    def __init__(
        self,
        stable_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        incomplete_timeout_s: float | None = None,
    ) -> None:
        if stable_s < 0:
            raise ValueError(f"stable_s must be >= 0, found {stable_s}")
        self.stable_s = stable_s
        self.clock = clock
        self.incomplete_timeout_s = (
            INCOMPLETE_TIMEOUT_FACTOR * stable_s
            if incomplete_timeout_s is None
            else incomplete_timeout_s
        )
        self._files: dict[Path, _Tracked] = {}

    def __contains__(self, path: object) -> bool:
        return path in self._files

    def __len__(self) -> int:
        return len(self._files)

    def touch(self, path: Path) -> None:
        """An event for ``path``: follow it, and restart its stability timer."""
        tracked = self._files.setdefault(path, _Tracked())
        tracked.changed_at = self.clock()

    def observe(self, path: Path) -> None:
        """A scan found ``path``: follow it if not followed yet (the timer keeps running)."""
        if path not in self._files:
            self.touch(path)

    def forget(self, path: Path) -> None:
        self._files.pop(path, None)

    def poll(self) -> tuple[list[Path], list[Path]]:
        """Look at every followed file; return (ready, gone) and stop following those."""
        now = self.clock()
        ready: list[Path] = []
        gone: list[Path] = []
        for path, tracked in list(self._files.items()):
            try:
                info = os.stat(path)
            except FileNotFoundError:
                gone.append(path)
                continue
            except OSError:  # not readable yet (a copy in progress on some systems)
                tracked.changed_at = now
                continue
            if not stat.S_ISREG(info.st_mode):
                gone.append(path)
                continue
            if (info.st_size, info.st_mtime_ns) != (tracked.size, tracked.mtime_ns):
                tracked.size, tracked.mtime_ns = info.st_size, info.st_mtime_ns
                tracked.changed_at = now
            stable_for = now - tracked.changed_at
            if stable_for < self.stable_s:
                continue
            if looks_complete(path, info.st_size) or stable_for >= self.incomplete_timeout_s:
                ready.append(path)
        for path in ready + gone:
            self._files.pop(path, None)
        return ready, gone
