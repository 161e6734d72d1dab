"""Workers that a killed daemon left running: found through ``/proc`` and killed at startup.

Apart from the service's loop because it is about processes, not files, and reads Linux's
``/proc``; elsewhere it does nothing.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from coolchic.daemon.context import logger


def stop_orphan_worker(pid: int, *, timeout_s: float = 10.0) -> bool:
    """Kill a worker that a killed daemon left behind, so that no job ever runs twice.

    Workers exit by themselves when their daemon dies, but not at the same instant. Only a
    ``multiprocessing`` child that started before this process did is killed (read from
    ``/proc``), so a PID that was reused since is left alone. Linux only; elsewhere a no-op.

    Returns:
        True if such a worker was found and killed.
    """
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
        started = _start_ticks(pid)
        own_start = _start_ticks(os.getpid())
    except (OSError, ValueError, IndexError):
        return False
    if b"multiprocessing" not in command or started > own_start:
        return False
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if _start_ticks(pid) != started:
                break  # gone, and the PID reused already
        except (OSError, ValueError, IndexError):
            break
        if _process_state(pid) in ("Z", "X"):
            break
        time.sleep(0.05)
    logger.warning("killed worker process %d, left running by the previous daemon", pid)
    return True


def _stat_fields(pid: int) -> list[str]:
    """Fields of ``/proc/PID/stat`` after the command name (which may hold spaces)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _start_ticks(pid: int) -> int:
    return int(_stat_fields(pid)[19])  # field 22 of stat(5): start time since boot, in ticks


def _process_state(pid: int) -> str:
    try:
        return _stat_fields(pid)[0]
    except (OSError, IndexError):
        return "X"
