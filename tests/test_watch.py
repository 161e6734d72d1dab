"""``coolchic watch`` end to end: real daemon processes, a real inbox, tiny instant encodes.

Every wait polls a condition (the journal, the log, the file system) against a deadline.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from pathlib import Path

from coolchic.cli import main
from tests.daemon_harness import Daemon, process_gone, temporaries, yuv_bytes


def test_watch_takes_each_file_once_and_only_when_complete(daemon, capsys) -> None:
    d = daemon("--stable-seconds", "1.0")
    present = d.inbox / "present_16x8_01p_yuv420_8b.yuv"
    present.write_bytes(yuv_bytes(seed=1))
    (d.inbox / ".hidden_16x8_01p_yuv420_8b.yuv").write_bytes(yuv_bytes())
    (d.inbox / "partial_16x8_01p_yuv420_8b.yuv.part").write_bytes(yuv_bytes())
    d.start()
    d.wait_state(present.name, "done")

    moved = d.drop("moved_16x8_01p_yuv420_8b.yuv", yuv_bytes(seed=2))

    slow = d.inbox / "slow_64x64_01p_yuv420_8b.yuv"
    content = yuv_bytes(64, 64, seed=3)
    with open(slow, "wb") as handle:  # an in-place copy, in chunks, with pauses
        for start in range(0, len(content), len(content) // 4):
            handle.write(content[start : start + len(content) // 4])
            handle.flush()
            time.sleep(0.25)

    broken = d.drop("broken_16x8_01p_yuv420_10b.yuv", b"\xff" * (16 * 8 * 3))
    deleted = d.inbox / "deleted_16x8_01p_yuv420_8b.yuv"
    deleted.write_bytes(yuv_bytes(seed=4))
    time.sleep(0.2)
    deleted.unlink()

    d.wait_state(moved.name, "done")
    done_slow = d.wait_state(slow.name, "done")
    failed = d.wait_state(broken.name, "failed")
    d.wait(lambda: (d.inbox / "failed" / broken.name).exists(), "broken input moved")
    late = d.drop("late_16x8_01p_yuv420_8b.yuv", yuv_bytes(seed=5))
    d.wait_state(late.name, "done")
    d.wait(lambda: (d.inbox / "done" / late.name).exists(), "late input moved")
    assert d.stop() == 0

    rows = d.rows()
    assert sorted(Path(r.path).name for r in rows) == sorted(
        [present.name, moved.name, slow.name, broken.name, late.name]
    )
    assert all(r.attempts == 1 for r in rows)
    assert done_slow.size == len(content)
    report = json.loads((d.output / "slow_64x64_01p_yuv420_8b.json").read_text())
    assert report["input_sha256"] == hashlib.sha256(content).hexdigest()
    # Disposal is recorded just after "done": read it from the final journal, not the snapshot.
    final_moved = next(r for r in rows if Path(r.path).name == moved.name)
    assert final_moved.disposed_to == str((d.inbox / "done" / moved.name).resolve())
    for name in (present.name, moved.name, slow.name, late.name):
        stem = name.removesuffix(".yuv")
        report = json.loads((d.output / f"{stem}.json").read_text())
        assert report["output_bytes"] == (d.output / f"{stem}.cool").stat().st_size
        assert (d.inbox / "done" / name).exists() and not (d.inbox / name).exists()
    error = json.loads((d.inbox / "failed" / f"{broken.name}.error.json").read_text())
    assert error["error_kind"] == "permanent" and "above 1023" in error["error"]
    assert failed.error == error["error"]
    assert (d.inbox / ".hidden_16x8_01p_yuv420_8b.yuv").exists()
    assert (d.inbox / "partial_16x8_01p_yuv420_8b.yuv.part").exists()
    assert not temporaries(d.output)
    kinds = [e.get("event") for e in d.events()]
    for kind in ("queued", "started", "done", "failed", "stopped"):
        assert kind in kinds, kind
    forecasts = {e["file"] for e in d.events() if e.get("event") == "forecast"}
    assert {present.name, moved.name, slow.name, late.name} <= forecasts  # before each encode
    done_event = next(e for e in d.events() if e.get("event") == "done")
    assert done_event["bpp"] > 0 and done_event["psnr_db"] > 0
    _check_status(d, capsys)


def _check_status(d: Daemon, capsys) -> None:
    """``coolchic status`` shows the same journal, as JSON and as a table."""
    assert main(["status", "--state-dir", str(d.state), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["counts"] == {"queued": 0, "running": 0, "done": 4, "failed": 1, "retry": 0}
    failed = [job for job in status["jobs"] if job["state"] == "failed"]
    assert "above 1023" in failed[0]["error"]
    assert main(["status", "--state-dir", str(d.state), "--state", "failed"]) == 0
    table = capsys.readouterr().out
    assert "broken_16x8" in table and "present_16x8" not in table
    assert "4 done, 1 failed" in table
    assert main(["status"]) == 2
    assert main(["status", str(d.base)]) == 1  # no journal in <base>/.coolchic
    assert "no journal" in capsys.readouterr().err


def test_watch_survives_a_burst_and_a_deleted_queued_file(daemon) -> None:
    d = daemon("--on-success", "delete").start()
    names = [f"burst{index:02d}_16x8_01p_yuv420_8b.yuv" for index in range(6)]
    for index, name in enumerate(names):
        (d.staging / name).write_bytes(yuv_bytes(seed=index))
    victim = d.staging / "victim_16x8_01p_yuv420_8b.yuv"
    victim.write_bytes(yuv_bytes(seed=99))
    for name in [*names, victim.name]:  # dropped at once
        os.rename(d.staging / name, d.inbox / name)
    d.wait_state(victim.name, "queued")
    (d.inbox / victim.name).unlink()  # deleted while it waits its turn

    d.wait(lambda: sum(r.state == "done" for r in d.rows()) == 6, "6 encodes", 240)
    d.wait(lambda: d.row(victim.name) is None, "the deleted file to be forgotten")
    assert d.process is not None and d.process.poll() is None
    assert d.stop() == 0
    assert sorted(p.name for p in d.output.glob("*.cool")) == sorted(
        n.replace(".yuv", ".cool") for n in names
    )
    assert not any(d.inbox.glob("*.yuv"))  # --on-success delete
    assert any(e.get("event") == "vanished" for e in d.events())


def test_kill_9_during_an_encode_then_restart_completes_it_once(daemon) -> None:
    d = daemon()
    d.start()
    name = "crash_64x64_01p_yuv420_8b.yuv"
    d.drop(name, yuv_bytes(64, 64, seed=7))
    running = d.wait_state(name, "running")
    d.wait(lambda: (row := d.row(name)) is not None and row.worker_pid, "a worker pid")
    worker_pid = d.row(name).worker_pid  # type: ignore[union-attr]
    d.wait_encoding(name)
    assert d.process is not None
    d.process.kill()  # SIGKILL: no handler, no clean-up
    d.process.wait(10)
    d.wait(lambda: process_gone(worker_pid), "the orphaned worker to exit", 15, alive=False)
    stale = d.row(name)
    assert stale is not None and stale.state == "running" and stale.id == running.id

    d.start()
    done = d.wait_state(name, "done")
    assert d.stop() == 0
    assert done.id == running.id and done.attempts == 1  # the restart used no attempt
    assert len(d.rows()) == 1
    stem = name.removesuffix(".yuv")
    assert sorted(p.name for p in d.output.iterdir()) == [f"{stem}.cool", f"{stem}.json"]
    report = json.loads((d.output / f"{stem}.json").read_text())
    assert report["output_bytes"] == (d.output / f"{stem}.cool").stat().st_size
    assert (d.inbox / "done" / name).exists()
    assert any(e.get("event") == "recovered" for e in d.events())


def test_sigterm_lets_the_running_encode_finish(daemon) -> None:
    d = daemon("--grace-seconds", "60").start()
    name = "graceful_64x64_01p_yuv420_8b.yuv"
    d.drop_and_wait_encoding(name, seed=8)
    started = time.monotonic()
    d.signal(signal.SIGTERM)
    assert d.process is not None
    assert d.process.wait(60) == 0
    assert time.monotonic() - started < 60
    row = d.row(name)
    assert row is not None and row.state == "done" and row.attempts == 1
    assert (d.output / "graceful_64x64_01p_yuv420_8b.cool").exists()
    assert [r for r in d.rows() if r.state == "running"] == []


def test_sigterm_past_the_grace_period_requeues_without_output(daemon) -> None:
    d = daemon("--grace-seconds", "0").start()
    name = "cut_64x64_01p_yuv420_8b.yuv"
    d.drop_and_wait_encoding(name, seed=9)
    d.signal(signal.SIGTERM)
    assert d.process is not None and d.process.wait(30) == 0
    row = d.row(name)
    assert row is not None and (row.state, row.attempts) == ("queued", 0)
    assert not any(d.output.iterdir())
    assert (d.inbox / name).exists()
    assert any(e.get("event") == "requeued" for e in d.events())


def test_second_ctrl_c_quits_at_once_with_130(daemon) -> None:
    d = daemon("--grace-seconds", "600").start()
    name = "impatient_64x64_01p_yuv420_8b.yuv"
    d.drop_and_wait_encoding(name, seed=10)
    d.signal(signal.SIGINT)
    d.wait(lambda: any(e.get("event") == "signal" for e in d.events()), "the first signal")
    d.signal(signal.SIGINT)
    assert d.process is not None and d.process.wait(30) == 130
    row = d.row(name)
    assert row is not None and row.state in ("queued", "done")
    assert not temporaries(d.output)


def _encodes(d: Daemon, name: str) -> list[str]:
    """The λ of every encode of ``name`` that a worker started, in order."""
    return [
        e["message"].split("lmbda ")[1].split(" ")[0]
        for e in d.events()
        if e.get("logger") == "coolchic.jobs"
        and e.get("message", "").startswith("encoding ")
        and name in e["message"]
    ]


def test_several_lmbdas_each_point_once_even_across_a_kill_9(daemon) -> None:
    d = daemon("--lmbda", "2e-2,1e-3", "--on-success", "keep")
    d.start()
    first, second = "a_64x64_01p_yuv420_8b.yuv", "b_64x64_01p_yuv420_8b.yuv"
    d.drop(first, yuv_bytes(64, 64, seed=11))
    d.drop(second, yuv_bytes(64, 64, seed=12))
    # kill -9 once the first file's first point is written and its second is under way
    d.wait(lambda: _encodes(d, first)[1:], "the second point of the first file to start")
    d.kill()
    assert (d.output / "a_64x64_01p_yuv420_8b.l2e-2.cool").exists()

    d.start()
    for name in (first, second):
        d.wait_state(name, "done")
    assert d.stop() == 0
    for name, seed in ((first, 11), (second, 12)):
        stem = name.removesuffix(".yuv")
        for point, lmbda in (("2e-2", 2e-2), ("1e-3", 1e-3)):
            report = json.loads((d.output / f"{stem}.l{point}.json").read_text())
            assert report["lmbda"] == lmbda
            assert (
                report["input_sha256"] == hashlib.sha256(yuv_bytes(64, 64, seed=seed)).hexdigest()
            )
            assert report["output_bytes"] == (d.output / f"{stem}.l{point}.cool").stat().st_size
    assert len(list(d.output.glob("*.cool"))) == 4 and not temporaries(d.output)
    # the point written before the kill was not encoded again; the interrupted one resumed
    assert _encodes(d, first).count("0.02") == 1
    assert _encodes(d, second) == ["0.02", "0.001"]
    assert len(d.rows()) == 2


def test_sigterm_finishes_the_running_point_and_leaves_the_next_for_the_restart(daemon) -> None:
    d = daemon("--lmbda", "2e-2,1e-3", "--grace-seconds", "60").start()
    name = "points_64x64_01p_yuv420_8b.yuv"
    d.drop_and_wait_encoding(name, seed=13)
    d.signal(signal.SIGTERM)
    assert d.process is not None and d.process.wait(60) == 0
    stem = name.removesuffix(".yuv")
    assert sorted(p.name for p in d.output.iterdir() if p.suffix == ".cool") == [
        f"{stem}.l2e-2.cool"
    ]
    row = d.row(name)
    assert row is not None and row.state == "queued"
    assert _encodes(d, name) == ["0.02"]  # the second point never started
