"""Small file-system helpers shared by every writer: atomic replace, readable errors."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from coolchic.errors import InputError

# Read once at import (os.umask can only be read by setting it); new files get 0o666 & ~umask
# like any file opened for writing, rather than mkstemp's private 0o600.
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` so that ``path`` is either absent, the old file, or complete.

    A temporary file is created next to the target (same file system), flushed, fsynced and
    renamed over it; the directory is fsynced too so the rename survives a power cut.
    """
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    fsync_directory(directory)


@contextlib.contextmanager
def output_folder_lock(folder: str | Path) -> Iterator[None]:
    """Hold the exclusive lock of an output folder while writing or cleaning it.

    Several processes may write into one folder (two ``batch`` runs, a daemon and a batch).
    Each writes a ``.cool`` and its report under this lock, so the pair on disk always comes
    from one encode, and temporary files exist only while someone holds it, so cleaning up
    under the lock never removes a write in progress. It is held for milliseconds, never
    during an encode. The lock is taken on the folder itself (no lock file is left in it).
    Where ``fcntl`` does not exist (Windows) nothing is locked.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def fsync_directory(directory: str | Path) -> None:
    """Persist a rename on POSIX; a no-op where directories cannot be opened (Windows)."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def regular_file_size(path: str | Path) -> int:
    """Size in bytes of a regular file, with an :class:`InputError` for anything else."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror or error})") from None
    if not os.path.isfile(path):
        raise InputError(f"{path}: not a regular file")
    return stat.st_size


def read_prefix(path: str | Path, n_bytes: int) -> bytes:
    """Read exactly the first ``n_bytes`` of a file, never more."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(n_bytes)
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror or error})") from None
    if len(data) != n_bytes:
        raise InputError(
            f"{path}: expected {n_bytes} bytes but could read only {len(data)} "
            "(was the file truncated while being read?)"
        )
    return data
