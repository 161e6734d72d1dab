"""A real ``coolchic watch`` process for the end-to-end tests, with its folders and log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from coolchic.daemon.journal import JobRow, Journal
from tests.conftest import planes_bytes, yuv420_planes

ROOT = Path(__file__).resolve().parent.parent
DEADLINE_S = 90.0


def yuv_bytes(width: int = 16, height: int = 8, *, seed: int = 0) -> bytes:
    return planes_bytes(yuv420_planes(width, height, 8, seed=seed))


class Daemon:
    """One ``python -m coolchic watch`` process with its inbox, outputs, journal and log."""

    def __init__(self, base: Path, *extra: str) -> None:
        self.base = base
        self.inbox = base / "inbox"
        self.output = base / "out"
        self.state = base / "state"
        self.log = base / "daemon.log"
        self.staging = base / "staging"
        for folder in (self.inbox, self.staging):
            folder.mkdir(parents=True, exist_ok=True)
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str, group: tuple[str, ...] = ()) -> Daemon:
        """Start the daemon; ``group`` options go before ``watch`` (``--log-file``)."""
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        command = [
            sys.executable,
            "-m",
            "coolchic",
            "--threads",
            "1",
            "--log-format",
            "json",
            *group,
            "watch",
            str(self.inbox),
            "--output",
            str(self.output),
            "--state-dir",
            str(self.state),
            "--recipe",
            "instant",
            "--stable-seconds",
            "0.5",
            "--rescan-seconds",
            "2",
            *self.extra,
            *extra,
        ]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=log, env=env, cwd=self.base
            )
        return self

    # -- observation -------------------------------------------------------------------------

    def events(self) -> list[dict]:
        if not self.log.exists():
            return []
        lines = self.log.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def rows(self) -> list[JobRow]:
        try:
            with Journal(self.state / "journal.sqlite3", read_only=True) as journal:
                return journal.rows()
        except Exception:  # not created yet, or busy for a moment
            return []

    def row(self, name: str) -> JobRow | None:
        rows = [r for r in self.rows() if Path(r.path).name == name]
        assert len(rows) <= 1, rows
        return rows[0] if rows else None

    def wait(
        self,
        condition: Callable[[], object],
        what: str,
        timeout_s: float = DEADLINE_S,
        *,
        alive: bool = True,
    ):
        """Poll ``condition`` until true; fail early if the daemon died (when ``alive``)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            if alive and self.process is not None and self.process.poll() is not None:
                break
            time.sleep(0.05)
        value = condition()
        if value:
            return value
        tail = self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
        raise AssertionError(f"timed out waiting for {what}\n--- daemon log ---\n{tail}")

    def wait_state(self, name: str, state: str) -> JobRow:
        return self.wait(
            lambda: (row := self.row(name)) is not None and row.state == state and row,
            f"{name} to be {state}",
        )

    def wait_encoding(self, name: str) -> None:
        """Until the worker logged that it started encoding ``name`` (it is mid-job then)."""
        self.wait(
            lambda: any(
                e.get("logger") == "coolchic.jobs" and name in e.get("message", "")
                for e in self.events()
            ),
            f"the encode of {name} to start",
        )

    # -- control -----------------------------------------------------------------------------

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def stop(self, timeout_s: float = 60.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout_s)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    # -- inputs --------------------------------------------------------------------------------

    def drop_and_wait_encoding(self, name: str, seed: int) -> None:
        """Drop a 64x64 file and return once its encode is under way."""
        self.drop(name, yuv_bytes(64, 64, seed=seed))
        self.wait_encoding(name)

    def drop(self, name: str, data: bytes) -> Path:
        """The recommended way: write beside the inbox, then rename into it."""
        staged = self.staging / name
        staged.write_bytes(data)
        target = self.inbox / name
        os.rename(staged, target)
        return target


def process_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]
