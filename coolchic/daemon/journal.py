"""The daemon's durable journal: one SQLite row per input file version, with its state.

A file version is keyed by ``(path, size, mtime_ns)``: the same path rewritten is a new job,
the same file seen again by a rescan or a duplicate event is not. States::

    queued ──claim──▶ running ──▶ done
       ▲                 │  └───▶ failed            (permanent error, or attempts used up)
       │                 └──────▶ retry ──(next_attempt_at)──▶ claimed again
       └── requeue (shutdown grace exceeded) / recover (the daemon ended while it ran)

Only evidence against a file counts as one of its ``attempts``: its encode raised, or its worker
process died while the daemon lived. A daemon that ended abnormally (``kill -9``, the OOM
killer, a reboot, a deploy) proves nothing against the files it was encoding: :meth:`recover`
re-queues them behind the rest of the queue without using an attempt. Only a restart loop is
held against a file: ``interruptions`` counts the abnormal ends during which it was the one
file in flight, with no job finished in between (:meth:`clear_interruptions`).

The database runs in WAL mode with ``synchronous=NORMAL``: a killed process loses nothing that
was committed, and readers (``coolchic status``) never block the daemon. Claims run in
``BEGIN IMMEDIATE`` transactions, so two processes can never claim the same row. Keep the file
on a local disk: SQLite's locking does not work over NFS/SMB.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from coolchic.errors import CoolchicError

JobState = Literal["queued", "running", "done", "failed", "retry"]
JOB_STATES: tuple[str, ...] = get_args(JobState)
TERMINAL_STATES = ("done", "failed")

SCHEMA_VERSION = 2
JOURNAL_NAME = "journal.sqlite3"

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS jobs (
    id              INTEGER PRIMARY KEY,
    path            TEXT    NOT NULL,
    size            INTEGER NOT NULL,
    mtime_ns        INTEGER NOT NULL,
    inode           INTEGER,
    state           TEXT    NOT NULL CHECK (state IN ({", ".join(f"'{s}'" for s in JOB_STATES)})),
    attempts        INTEGER NOT NULL DEFAULT 0,
    interruptions   INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL,
    error           TEXT,
    error_kind      TEXT,
    output          TEXT,
    bpp             REAL,
    psnr_db         REAL,
    encode_seconds  REAL,
    worker_pid      INTEGER,
    disposed_to     TEXT,
    queued_at       REAL    NOT NULL,
    started_at      REAL,
    finished_at     REAL,
    updated_at      REAL    NOT NULL,
    UNIQUE (path, size, mtime_ns)
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, next_attempt_at);
"""
#: Schema changes, from the version before each one (a journal is upgraded in place).
_MIGRATIONS = {
    1: "ALTER TABLE jobs ADD COLUMN interruptions INTEGER NOT NULL DEFAULT 0;",
}


class JournalError(CoolchicError):
    """The journal cannot be opened or is not one this version understands."""


@dataclass(frozen=True)
class JobRow:
    """One row of the journal (times are seconds since the epoch)."""

    id: int
    path: str
    size: int
    mtime_ns: int
    inode: int | None
    state: JobState
    attempts: int
    interruptions: int
    next_attempt_at: float | None
    error: str | None
    error_kind: str | None
    output: str | None
    bpp: float | None
    psnr_db: float | None
    encode_seconds: float | None
    worker_pid: int | None
    disposed_to: str | None
    queued_at: float
    started_at: float | None
    finished_at: float | None
    updated_at: float

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


_COLUMNS = ", ".join(JobRow.__dataclass_fields__)


def _stored_path(path: str | Path) -> str | bytes:
    """A path as the journal keeps it: text, or its raw bytes when they are not UTF-8.

    POSIX file names are bytes; Python carries undecodable ones as lone surrogates, which
    SQLite's text cannot hold. Such a path is stored as a BLOB of its bytes instead, so it
    still names the file exactly (and stays unique).
    """
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text)
    return text


#: Columns that hold file names, stored by :func:`_stored_path`.
_PATH_COLUMNS = ("path", "output", "disposed_to")


def _stored_text(column: str, value: Any) -> Any:
    """A value as SQLite can hold it: paths exactly, other text with bad bytes escaped."""
    if not isinstance(value, str):
        return value
    if column in _PATH_COLUMNS:
        return _stored_path(value)
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def _job_row(values: tuple[Any, ...]) -> JobRow:
    row = JobRow(*values)
    decoded = {
        column: os.fsdecode(getattr(row, column))
        for column in _PATH_COLUMNS
        if isinstance(getattr(row, column), bytes)
    }
    return dataclasses.replace(row, **decoded) if decoded else row


class Journal:
    """The job table in ``<state_dir>/journal.sqlite3``; one connection, one thread.

    ``clock`` gives wall-clock seconds (``time.time``): journal times outlive the process.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        read_only: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.clock = clock
        try:
            if read_only:
                if not self.path.is_file():
                    raise JournalError(f"{self.path}: no journal here")
                uri = self.path.resolve().as_uri() + "?mode=ro"
                self._db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=10)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(self.path, isolation_level=None, timeout=10)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=10000")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise JournalError(
                    f"{self.path}: journal schema {version} is newer than this coolchic's "
                    f"({SCHEMA_VERSION})"
                )
            self._check_integrity()
            if not read_only and version < SCHEMA_VERSION:
                upgrade = (
                    _SCHEMA
                    if version == 0
                    else "".join(_MIGRATIONS[v] for v in range(version, SCHEMA_VERSION))
                )
                self._db.executescript(
                    f"BEGIN; {upgrade} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;"
                )
        except sqlite3.Error as error:
            raise JournalError(
                f"{self.path}: cannot open the journal ({error}); if it is damaged, move it "
                "aside and start again (a new journal is built from the inbox)"
            ) from None

    def _check_integrity(self) -> None:
        """Refuse a damaged database rather than lose or invent history (one clear line)."""
        rows = self._db.execute("PRAGMA quick_check(3)").fetchall()
        problems = [line for row in rows for line in row[0].splitlines() if "***" not in line]
        if problems != ["ok"]:
            raise JournalError(
                f"{self.path}: the journal is damaged ({'; '.join(problems)}); move it aside "
                "and start again (a new journal is built from the inbox)"
            )

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.rollback()
        self._db.close()

    def rollback(self) -> None:
        """End a transaction that an interruption left open."""
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    # ------------------------------------------------------------------------- reading

    def get(self, job_id: int) -> JobRow | None:
        return self._one(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,))

    def find(self, path: str | Path, size: int, mtime_ns: int) -> JobRow | None:
        """The row of this file version, if the journal knows it."""
        return self._one(
            f"SELECT {_COLUMNS} FROM jobs WHERE path = ? AND size = ? AND mtime_ns = ?",
            (_stored_path(path), size, mtime_ns),
        )

    def rows(self, states: Iterable[str] | None = None) -> list[JobRow]:
        """Every row (or those in ``states``), oldest first."""
        if states is None:
            cursor = self._db.execute(f"SELECT {_COLUMNS} FROM jobs ORDER BY id")
        else:
            wanted = list(states)
            marks = ", ".join("?" for _ in wanted)
            cursor = self._db.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE state IN ({marks}) ORDER BY id", wanted
            )
        return [_job_row(row) for row in cursor.fetchall()]

    def counts(self) -> dict[str, int]:
        """Rows per state (every state present, zero included)."""
        counts = dict.fromkeys(JOB_STATES, 0)
        for state, count in self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state"):
            counts[state] = count
        return counts

    def next_retry_at(self) -> float | None:
        """When the earliest waiting retry is due."""
        return self._db.execute(
            "SELECT MIN(next_attempt_at) FROM jobs WHERE state = 'retry'"
        ).fetchone()[0]

    # ------------------------------------------------------------------------- writing

    def enqueue(self, path: str | Path, size: int, mtime_ns: int, inode: int | None) -> JobRow:
        """Queue this file version unless the journal knows it; return its row either way."""
        now = self.clock()
        self._db.execute(
            "INSERT OR IGNORE INTO jobs (path, size, mtime_ns, inode, state, queued_at, "
            "updated_at) VALUES (?, ?, ?, ?, 'queued', ?, ?)",
            (_stored_path(path), size, mtime_ns, inode, now, now),
        )
        row = self.find(path, size, mtime_ns)
        assert row is not None
        return row

    def claim(self) -> JobRow | None:
        """Take the oldest queued job, or a retry that is due, and mark it running.

        The select and the update run in one ``BEGIN IMMEDIATE`` transaction (a write lock
        from the start), so a row is claimed once even with several processes.
        """
        now = self.clock()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            found = self._db.execute(
                "SELECT id FROM jobs WHERE state = 'queued' "
                "OR (state = 'retry' AND next_attempt_at <= ?) "
                "ORDER BY COALESCE(next_attempt_at, queued_at), id LIMIT 1",
                (now,),
            ).fetchone()
            if found is None:
                self._db.execute("COMMIT")
                return None
            self._db.execute(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, started_at = ?, "
                "finished_at = NULL, next_attempt_at = NULL, worker_pid = NULL, updated_at = ? "
                "WHERE id = ?",
                (now, now, found[0]),
            )
            self._db.execute("COMMIT")
        except BaseException:
            self.rollback()
            raise
        return self.get(found[0])

    def set_worker(self, job_id: int, pid: int | None) -> None:
        self._update(job_id, worker_pid=pid)

    def finish_done(
        self,
        job_id: int,
        *,
        output: str | None,
        bpp: float | None,
        psnr_db: float | None,
        encode_seconds: float | None,
    ) -> None:
        self._update(
            job_id,
            state="done",
            output=output,
            bpp=bpp,
            psnr_db=psnr_db,
            encode_seconds=encode_seconds,
            error=None,
            error_kind=None,
            worker_pid=None,
            finished_at=self.clock(),
        )

    def finish_failed(self, job_id: int, *, error: str, error_kind: str | None) -> None:
        self._update(
            job_id,
            state="failed",
            error=error,
            error_kind=error_kind,
            worker_pid=None,
            finished_at=self.clock(),
        )

    def schedule_retry(
        self, job_id: int, *, error: str, error_kind: str | None, delay_s: float
    ) -> None:
        self._update(
            job_id,
            state="retry",
            error=error,
            error_kind=error_kind,
            worker_pid=None,
            next_attempt_at=self.clock() + delay_s,
        )

    def requeue(self, job_id: int) -> None:
        """Put a job that was stopped on purpose back in the queue; that run does not count."""
        self._db.execute(
            "UPDATE jobs SET state = 'queued', attempts = MAX(0, attempts - 1), "
            "worker_pid = NULL, started_at = NULL, updated_at = ? "
            "WHERE id = ? AND state = 'running'",
            (self.clock(), job_id),
        )

    def recover(self, max_interruptions: int) -> tuple[list[JobRow], list[JobRow]]:
        """After the daemon ended abnormally: its ``running`` jobs go back to the queue.

        The interrupted run does not count as an attempt, and the job goes behind the jobs
        already queued (a file that really brings the daemon down then cannot hold up the
        others). When a single job was in flight, its ``interruptions`` grows; at
        ``max_interruptions`` the job is failed instead, so that an input that makes the
        daemon crash cannot make it crash forever. Returns (requeued, failed) rows.
        """
        running = self.rows(["running"])
        requeued: list[JobRow] = []
        failed: list[JobRow] = []
        now = self.clock()
        for row in running:
            interruptions = row.interruptions + (len(running) == 1)
            if interruptions >= max_interruptions:
                self._update(row.id, interruptions=interruptions)
                self.finish_failed(
                    row.id,
                    error=(
                        f"the daemon ended abnormally {interruptions} times in a row while "
                        "this file was the only one being encoded"
                    ),
                    error_kind="permanent",
                )
                failed.append(row)
                continue
            self._update(
                row.id,
                state="queued",
                attempts=max(0, row.attempts - 1),
                interruptions=interruptions,
                worker_pid=None,
                started_at=None,
                queued_at=now,
            )
            requeued.append(row)
        return requeued, failed

    def clear_interruptions(self) -> None:
        """A job ran to its end: the daemon is healthy, earlier interruptions were not a loop."""
        self._db.execute("UPDATE jobs SET interruptions = 0 WHERE interruptions > 0")

    def revive(self, job_id: int) -> None:
        """Queue a finished job again, attempts reset (its input was brought back)."""
        now = self.clock()
        self._db.execute(
            "UPDATE jobs SET state = 'queued', attempts = 0, error = NULL, error_kind = NULL, "
            "disposed_to = NULL, next_attempt_at = NULL, queued_at = ?, updated_at = ? "
            "WHERE id = ?",
            (now, now, job_id),
        )

    def forget(self, job_id: int) -> None:
        """Delete a row (its input vanished or changed before it was encoded)."""
        self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def set_disposed(self, job_id: int, where: str) -> None:
        self._update(job_id, disposed_to=where)

    # ------------------------------------------------------------------------- helpers

    def _one(self, query: str, parameters: tuple[Any, ...]) -> JobRow | None:
        row = self._db.execute(query, parameters).fetchone()
        return None if row is None else _job_row(row)

    def _update(self, job_id: int, **values: Any) -> None:
        unknown = set(values) - set(JobRow.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown journal columns {sorted(unknown)}")
        values = {name: _stored_text(name, value) for name, value in values.items()}
        values["updated_at"] = self.clock()
        assignments = ", ".join(f"{name} = ?" for name in values)
        self._db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (*values.values(), job_id))
