"""One daemon per inbox and per state folder: ``flock`` locks that name their owner's PID."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from coolchic.daemon.config import INBOX_LOCK_NAME, LOCK_NAME, DaemonError


class PidLock:
    """An exclusive ``flock`` on a file that holds the owner's PID, taken without waiting.

    The kernel releases it when the process dies, even by ``kill -9``. Where ``fcntl`` does not
    exist (Windows) no lock is taken.
    """

    def __init__(self, path: Path, holder: str) -> None:
        self.path = path
        self.holder = holder  # what the owner does, for the refusal: "is using the state …"
        self._handle: Any = None

    def __enter__(self) -> PidLock:
        try:
            import fcntl
        except ImportError:
            return self
        try:
            handle = open(self.path, "a+", encoding="utf-8")  # held while the daemon runs
        except OSError as error:
            raise DaemonError(
                f"cannot create the lock file {self.path} ({error.strerror or error})"
            ) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            owner = handle.read().strip() or "?"
            handle.close()
            raise DaemonError(f"another coolchic watch (pid {owner}) {self.holder}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._handle is not None:
            self._handle.close()  # closing releases the lock
            self._handle = None


class StateLock(PidLock):
    """``<state_dir>/daemon.lock``: one daemon per journal."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir / LOCK_NAME, f"is using the state folder {state_dir}")


class InboxLock(PidLock):
    """``<inbox>/.coolchic-watch.lock``: one daemon per inbox, whatever its state folder.

    Two daemons with two journals would each encode every file; a second daemon is refused
    instead (see ``docs/deploy.md`` for why it does not cooperate). The name is hidden, so it
    is never taken for an input.
    """

    def __init__(self, inbox: Path) -> None:
        super().__init__(inbox / INBOX_LOCK_NAME, f"is watching the inbox {inbox}")
