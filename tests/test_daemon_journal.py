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


def test_recover_requeues_running_jobs_and_fails_the_hopeless(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    journal = Journal(path)
    fresh = journal.enqueue("/in/a.yuv", 1, 1, None)
    poison = journal.enqueue("/in/b.yuv", 1, 1, None)
    journal.claim()
    journal.claim()
    for _ in range(2):  # b has crashed the daemon twice before
        journal.requeue(poison.id)
        journal._update(poison.id, state="running", attempts=3)
    journal._db.close()  # like a kill -9: no clean close

    with Journal(path) as reopened:
        assert {r.id for r in reopened.rows(["running"])} == {fresh.id, poison.id}
        requeued, failed = reopened.recover(max_attempts=3)
        assert [r.id for r in requeued] == [fresh.id]
        assert [r.id for r in failed] == [poison.id]
        assert reopened.get(fresh.id).state == "queued"  # type: ignore[union-attr]
        assert reopened.get(poison.id).state == "failed"  # type: ignore[union-attr]


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
