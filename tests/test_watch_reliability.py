"""``coolchic watch`` under an operator's restarts, workers that die, and a second daemon.

Real daemon processes, as in ``test_watch.py``; every wait polls the journal or the log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from coolchic.codec import decode_stream
from coolchic.daemon.journal import JobRow
from tests.daemon_harness import ROOT, Daemon, process_gone, temporaries, yuv_bytes


def _in_flight(d: Daemon, earlier: set[int]) -> JobRow | None:
    """A job that this daemon runs (not a row the previous one left behind)."""
    return next(
        (r for r in d.rows() if r.state == "running" and r.worker_pid not in (None, *earlier)),
        None,
    )


def _kill_9(d: Daemon, earlier: set[int]) -> int:
    """Kill the daemon mid-encode; return the PID of the worker that was encoding."""
    row = d.wait(lambda: _in_flight(d, earlier), "an encode in progress")
    assert d.process is not None and row.worker_pid is not None
    d.process.kill()
    d.process.wait(10)
    d.wait(lambda: process_gone(row.worker_pid), "the worker to exit", 15, alive=False)
    return row.worker_pid


def test_three_kill_9_during_a_burst_lose_nothing_and_quarantine_nothing(daemon) -> None:
    d = daemon()
    names = [f"burst{index:02d}_16x8_01p_yuv420_8b.yuv" for index in range(6)]
    for index, name in enumerate(names):
        (d.staging / name).write_bytes(yuv_bytes(seed=index))
    for name in names:  # dropped at once
        os.rename(d.staging / name, d.inbox / name)
    d.start()
    workers: set[int] = set()
    for _ in range(3):
        workers.add(_kill_9(d, workers))  # waits until that worker is gone: no orphan encode
        d.start()
    d.wait(lambda: sum(r.state == "done" for r in d.rows()) == 6, "6 encodes", 300)
    assert d.stop() == 0

    rows = d.rows()
    assert len(rows) == 6 and {r.state for r in rows} == {"done"}
    assert not (d.inbox / "failed").exists() or not any((d.inbox / "failed").iterdir())
    stems = sorted(name.removesuffix(".yuv") for name in names)
    assert sorted(p.stem for p in d.output.glob("*.cool")) == stems
    assert sorted(p.stem for p in d.output.glob("*.json")) == stems
    assert not temporaries(d.output) and not temporaries(d.inbox)
    for stem in stems:
        stream = (d.output / f"{stem}.cool").read_bytes()
        assert decode_stream(stream).frame.width == 16
    assert sorted(p.name for p in (d.inbox / "done").iterdir()) == sorted(names)
    recovered = [e for e in d.events() if e.get("event") == "recovered"]
    assert len(recovered) == 3 and len(workers) == 3
    assert all(r.attempts == 1 for r in rows)  # the three restarts used no attempt


def test_a_worker_that_dies_on_one_file_every_time_sends_it_to_failed(daemon) -> None:
    d = daemon("--max-attempts", "2", "--retry-seconds", "0").start()
    poison = d.drop("poison_64x64_01p_yuv420_8b.yuv", yuv_bytes(64, 64, seed=1))
    killed = []
    for attempt in (1, 2):  # the worker dies on this input, and only on it, every time
        row = d.wait(
            lambda attempt=attempt: (
                (row := d.row(poison.name)) is not None
                and row.state == "running"
                and row.attempts == attempt
                and row.worker_pid
                and row
            ),
            f"attempt {attempt}",
        )
        os.kill(row.worker_pid, signal.SIGKILL)
        killed.append(row.worker_pid)
    failed = d.wait_state(poison.name, "failed")
    d.wait(lambda: (d.inbox / "failed" / poison.name).exists(), "the input in failed/")
    healthy = d.drop("healthy_16x8_01p_yuv420_8b.yuv", yuv_bytes(seed=2))
    d.wait_state(healthy.name, "done")  # the daemon itself lived on
    assert d.stop() == 0

    assert failed.attempts == 2 and failed.error == "the worker process died (killed by signal 9)"
    error = json.loads((d.inbox / "failed" / f"{poison.name}.error.json").read_text())
    assert error["error"] == failed.error and error["attempts"] == 2
    assert all(process_gone(pid) for pid in killed)
    assert not (d.output / "poison_64x64_01p_yuv420_8b.cool").exists()


def test_a_second_daemon_on_the_same_inbox_is_refused_and_each_file_encoded_once(
    daemon, tmp_path: Path
) -> None:
    first = daemon().start()
    first.wait(
        lambda: any(e.get("event") == "started_watching" for e in first.events()), "first up"
    )
    assert first.process is not None
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for state in (first.state, tmp_path / "other-state"):  # same journal, or a journal of its own
        command = ["watch", str(first.inbox), "--state-dir", str(state)]
        second = subprocess.run(
            [sys.executable, "-m", "coolchic", *command],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert second.returncode == 1
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and f"pid {first.process.pid}" in lines[0], second.stderr

    names = [f"pair{index}_16x8_01p_yuv420_8b.yuv" for index in range(4)]
    for index, name in enumerate(names):
        first.drop(name, yuv_bytes(seed=index))
    first.wait(lambda: sum(r.state == "done" for r in first.rows()) == 4, "4 encodes", 180)
    assert first.stop() == 0
    rows = first.rows()
    assert sorted(Path(r.path).name for r in rows) == sorted(names)
    assert all(r.attempts == 1 for r in rows)
    assert not (tmp_path / "other-state" / "journal.sqlite3").exists()


def test_a_restarted_daemon_kills_the_worker_its_predecessor_left() -> None:
    """Only a multiprocessing child older than the new daemon is killed (no reused PIDs)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    orphan = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", "--multiprocessing-fork"]
    )
    unrelated = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        check = (
            "import sys\n"
            "from coolchic.daemon.service import stop_orphan_worker\n"
            "print(stop_orphan_worker(int(sys.argv[1])), stop_orphan_worker(int(sys.argv[2])))\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", check, str(orphan.pid), str(unrelated.pid)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert result.stdout.split() == ["True", "False"], result.stderr
        assert orphan.wait(10) == -signal.SIGKILL
        assert unrelated.poll() is None  # not a worker: left alone
    finally:
        for process in (orphan, unrelated):
            process.kill()
            process.wait(10)
