"""The daemon's SQLite journal: keys, claims, retries, recovery after a crash."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from coolchic.daemon.journal import Journal, JournalError


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_file_version_is_queued_once(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite3") as journal:
        first = journal.enqueue("/in/a.yuv", 10, 111, 5)
        again = journal.enqueue("/in/a.yuv", 10, 111, 5)
        assert first.id == again.id and first.state == "queued"
        rewritten = journal.enqueue("/in/a.yuv", 10, 222, 5)  # same path, new mtime: a new job
        assert rewritten.id != first.id
        assert journal.find("/in/a.yuv", 10, 111) == first
        assert journal.find("/in/a.yuv", 11, 111) is None
        assert journal.counts()["queued"] == 2


def test_claims_retries_and_terminal_states(tmp_path: Path) -> None:
    clock = FakeClock()
    with Journal(tmp_path / "j.sqlite3", clock=clock) as journal:
        a = journal.enqueue("/in/a.yuv", 1, 1, None)
        b = journal.enqueue("/in/b.yuv", 1, 1, None)
        claimed = journal.claim()
        assert claimed is not None and claimed.id == a.id
        assert (claimed.state, claimed.attempts) == ("running", 1)
        journal.schedule_retry(a.id, error="EIO", error_kind="transient", delay_s=30)
        second = journal.claim()
        assert second is not None and second.id == b.id
        journal.finish_done(b.id, output="/out/b.cool", bpp=0.5, psnr_db=40.0, encode_seconds=2)
        assert journal.claim() is None  # the retry is not due yet
        assert journal.next_retry_at() == pytest.approx(1030.0)
        clock.now += 31
        retried = journal.claim()
        assert retried is not None and (retried.id, retried.attempts) == (a.id, 2)
        journal.finish_failed(a.id, error="EIO again", error_kind="transient")
        assert journal.claim() is None
        rows = {row.path: row for row in journal.rows()}
        assert rows["/in/b.yuv"].state == "done" and rows["/in/b.yuv"].bpp == 0.5
        assert rows["/in/a.yuv"].state == "failed" and rows["/in/a.yuv"].error == "EIO again"
        assert journal.counts() == {"queued": 0, "running": 0, "done": 1, "failed": 1, "retry": 0}


def test_requeue_does_not_count_the_interrupted_attempt(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite3") as journal:
        row = journal.enqueue("/in/a.yuv", 1, 1, None)
        journal.claim()
        journal.requeue(row.id)
        back = journal.get(row.id)
        assert back is not None and (back.state, back.attempts) == ("queued", 0)


def test_a_daemon_restart_never_uses_an_attempt(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    clock = FakeClock()
    journal = Journal(path, clock=clock)
    first = journal.enqueue("/in/a.yuv", 1, 1, None)
    second = journal.enqueue("/in/b.yuv", 1, 1, None)
    waiting = journal.enqueue("/in/c.yuv", 1, 1, None)
    journal.claim()
    journal.claim()
    journal._db.close()  # like a kill -9: no clean close

    clock.now += 10
    with Journal(path, clock=clock) as reopened:
        assert {r.id for r in reopened.rows(["running"])} == {first.id, second.id}
        requeued, failed = reopened.recover(max_interruptions=1)
        assert {r.id for r in requeued} == {first.id, second.id} and failed == []
        for row in reopened.rows([]) or [reopened.get(first.id), reopened.get(second.id)]:
            assert row is not None
            # two jobs were in flight: nothing points at either, not even with a limit of 1
            assert (row.state, row.attempts, row.interruptions) == ("queued", 0, 0)
        # the interrupted jobs go behind the one that was waiting
        assert [reopened.claim().id for _ in range(3)] == [waiting.id, first.id, second.id]  # type: ignore[union-attr]


def test_a_restart_loop_on_one_file_fails_it_and_a_finished_job_resets_the_count(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.sqlite3"
    with Journal(path) as journal:
        poison = journal.enqueue("/in/poison.yuv", 1, 1, None)
        for loop in range(1, 3):  # the daemon dies twice with only this file in flight
            assert journal.claim() is not None
            requeued, failed = journal.recover(max_interruptions=3)
            assert [r.id for r in requeued] == [poison.id] and failed == []
            assert journal.get(poison.id).interruptions == loop  # type: ignore[union-attr]
        other = journal.enqueue("/in/other.yuv", 1, 1, None)
        journal.claim()
        journal.finish_done(poison.id, output=None, bpp=None, psnr_db=None, encode_seconds=None)
        journal.clear_interruptions()  # what the daemon does when any job finishes
        journal.revive(poison.id)
        journal.forget(other.id)
        for _ in range(2):
            journal.claim()
            journal.recover(max_interruptions=3)
        assert journal.get(poison.id).state == "queued"  # type: ignore[union-attr]
        journal.claim()
        requeued, failed = journal.recover(max_interruptions=3)
        assert requeued == [] and [r.id for r in failed] == [poison.id]
        row = journal.get(poison.id)
        assert row is not None and (row.state, row.error_kind) == ("failed", "permanent")
        assert "3 times in a row" in (row.error or "")


def test_a_version_1_journal_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE jobs (id INTEGER PRIMARY KEY, path TEXT NOT NULL, size INTEGER NOT NULL, "
        "mtime_ns INTEGER NOT NULL, inode INTEGER, state TEXT NOT NULL, attempts INTEGER NOT "
        "NULL DEFAULT 0, next_attempt_at REAL, error TEXT, error_kind TEXT, output TEXT, bpp "
        "REAL, psnr_db REAL, encode_seconds REAL, worker_pid INTEGER, disposed_to TEXT, "
        "queued_at REAL NOT NULL, started_at REAL, finished_at REAL, updated_at REAL NOT NULL, "
        "UNIQUE (path, size, mtime_ns));"
        "INSERT INTO jobs (path, size, mtime_ns, state, attempts, queued_at, updated_at) "
        "VALUES ('/in/a.yuv', 1, 1, 'done', 1, 5.0, 6.0);"
        "PRAGMA user_version = 1;"
    )
    db.close()
    with Journal(path) as journal:
        [row] = journal.rows()
        assert (row.path, row.state, row.attempts, row.interruptions) == ("/in/a.yuv", "done", 1, 0)
        assert journal._db.execute("PRAGMA user_version").fetchone()[0] == 2


def test_a_damaged_journal_is_refused_with_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    with Journal(path) as journal:
        for index in range(200):
            journal.enqueue(f"/in/{index:03d}-{'x' * 200}.yuv", 1, 1, None)
    data = bytearray(path.read_bytes())
    truncated = tmp_path / "truncated.sqlite3"
    truncated.write_bytes(bytes(data[: len(data) // 2]))
    corrupt = tmp_path / "corrupt.sqlite3"
    data[4096 : 3 * 4096] = b"\xa5" * (2 * 4096)  # two of the table's pages overwritten
    corrupt.write_bytes(bytes(data))
    for damaged in (truncated, corrupt):
        with pytest.raises(JournalError, match="move it aside") as caught:
            Journal(damaged)
        assert "\n" not in str(caught.value)


def test_concurrent_claims_never_share_a_job(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    with Journal(path) as journal:
        for index in range(40):
            journal.enqueue(f"/in/{index}.yuv", 1, 1, None)
    claimed: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        with Journal(path) as own:
            while (row := own.claim()) is not None:
                with lock:
                    claimed.append(row.id)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == list(range(1, 41))


def test_journal_is_wal_and_readable_while_written(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    with Journal(path) as journal:
        journal.enqueue("/in/a.yuv", 1, 1, None)
        mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
        with Journal(path, read_only=True) as reader:
            assert [r.path for r in reader.rows()] == ["/in/a.yuv"]
            with pytest.raises(sqlite3.OperationalError):
                reader.enqueue("/in/b.yuv", 1, 1, None)
    with Journal(path, read_only=True) as reader:  # closed writer, no -wal/-shm left
        assert reader.counts()["queued"] == 1


def test_missing_or_foreign_journal_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="no journal"):
        Journal(tmp_path / "absent.sqlite3", read_only=True)
    future = tmp_path / "future.sqlite3"
    sqlite3.connect(future).execute("PRAGMA user_version = 99").connection.close()
    with pytest.raises(JournalError, match="newer"):
        Journal(future)
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(JournalError):
        Journal(garbage)
