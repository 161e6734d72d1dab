"""Hostile and unlucky inputs for ``coolchic watch``: each ends with one clear line, nothing lost.

Odd names, empty and absurd files, FIFOs and folders, an unwritable output, a full disk, a
damaged journal and SIGHUP. The service runs in-process where it can (fast), as a real
process where the probe needs one (another user, signals).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from coolchic.cli import main
from coolchic.daemon.journal import Journal
from coolchic.jobs.inputs import MAX_OUTPUT_STEM_BYTES
from tests.daemon_harness import ROOT, Daemon, temporaries, yuv_bytes
from tests.test_daemon_service import _config, rows, running, state_of, wait_for


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _outside_untouched(tmp_path: Path) -> None:
    """Nothing was written beside the inbox, the output and the state folders."""
    assert {p.name for p in tmp_path.iterdir()} <= {"inbox", "out", "state", "elsewhere"}


def test_odd_names_are_encoded_and_a_too_long_one_fails_clearly(tmp_path: Path) -> None:
    config = _config(tmp_path, max_attempts=1)
    tail = "_16x8_01p_yuv420_8b.yuv"
    names = [
        "with  spaces" + tail,
        os.fsdecode(b"caf\xe9-latin1" + tail.encode()),  # not UTF-8
        "dots..in..name" + tail,
        "ünïcødé" + tail,
    ]
    longest_ok = "k" * (MAX_OUTPUT_STEM_BYTES - len(tail) + 4) + tail
    too_long = "x" * (255 - len(tail)) + tail  # 255 bytes: its outputs' names cannot exist
    assert len(os.fsencode(too_long)) == 255
    newline = "new\nline" + tail  # not a name of the convention: refused, on one line
    for index, name in enumerate([*names, longest_ok, too_long, newline]):
        (config.inbox / name).write_bytes(yuv_bytes(seed=index))
    with running(config):
        for name in [*names, longest_ok]:
            wait_for(lambda name=name: state_of(config, name) == "done", repr(name))
        wait_for(lambda: state_of(config, too_long) == "failed", "the long name to fail")
        wait_for(lambda: (config.failed_dir / too_long).exists(), "the long name in failed/")
        wait_for(lambda: (config.failed_dir / newline).exists(), "the newline in failed/")
    for name in [*names, longest_ok]:
        stem = name.removesuffix(".yuv")
        assert (config.output / f"{stem}.cool").is_file() and (config.output / f"{stem}.json")
        assert (config.done_dir / name).is_file()
    failed = {Path(r.path).name: r for r in rows(config) if r.state == "failed"}
    assert set(failed) == {too_long, newline}
    assert {r.error_kind for r in failed.values()} == {"permanent"}
    assert "too long" in (failed[too_long].error or "")
    assert "convention" in (failed[newline].error or "") and "\n" not in failed[newline].error
    reports = {json.loads(p.read_text())["moved_to"]: p for p in config.failed_dir.glob("*.json")}
    assert set(reports) == {str(config.failed_dir / n) for n in (too_long, newline)}
    assert len(os.fsencode(reports[str(config.failed_dir / too_long)].name)) < 64
    assert not temporaries(config.output) and not any(config.inbox.glob("*.yuv"))
    _outside_untouched(tmp_path)


def test_empty_and_absurd_files_fail_at_once_without_allocating(tmp_path: Path) -> None:
    config = _config(tmp_path)
    empty = config.inbox / "empty_16x8_01p_yuv420_8b.yuv"
    empty.touch()
    absurd = config.inbox / "absurd_100000x100000_01p_yuv420_8b.yuv"  # 15 GB claimed
    absurd.write_bytes(yuv_bytes())
    with running(config):
        for path in (empty, absurd):  # taken after 10 x stable-seconds, then failed
            wait_for(lambda path=path: (config.failed_dir / path.name).exists(), path.name)
    by_name = {Path(r.path).name: r for r in rows(config)}
    for path, reason in ((empty, "the file is empty"), (absurd, "larger than the maximum")):
        row = by_name[path.name]
        assert (row.state, row.error_kind, row.attempts) == ("failed", "permanent", 1)
        assert reason in (row.error or "") and "\n" not in (row.error or "")
        error = json.loads((config.failed_dir / f"{path.name}.error.json").read_text())
        assert error["error"] == row.error
    assert (config.failed_dir / empty.name).stat().st_size == 0
    _outside_untouched(tmp_path)


def test_fifos_and_folders_named_like_inputs_are_left_alone(tmp_path: Path, caplog) -> None:
    config = _config(tmp_path)
    fifo = config.inbox / "pipe_16x8_01p_yuv420_8b.yuv"
    os.mkfifo(fifo)  # opening it to read would block the daemon forever
    folder = config.inbox / "folder_16x8_01p_yuv420_8b.yuv"
    folder.mkdir()
    (folder / "inner.txt").write_text("mine")
    good = config.inbox / "good_16x8_01p_yuv420_8b.yuv"
    good.write_bytes(yuv_bytes())
    with caplog.at_level(logging.WARNING, logger="coolchic"), running(config):
        wait_for(lambda: state_of(config, good.name) == "done", "the regular file")
        wait_for(lambda: len(_ignored(caplog)) == 2, "a line for each")
        wait_for(lambda: (config.done_dir / good.name).exists(), "the regular file moved")
        names = {Path(r.path).name for r in rows(config)}
    assert names == {good.name}
    assert fifo.exists() and (folder / "inner.txt").read_text() == "mine"
    lines = _ignored(caplog)
    assert len(lines) == 2  # said once each, though rescanned many times
    assert any("pipe" in line and "not a regular file" in line for line in lines)
    assert any("folder" in line and "a folder" in line for line in lines)


def _ignored(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if getattr(r, "event", "") == "ignored"]


def test_an_unwritable_output_folder_stops_the_daemon_with_one_line(tmp_path: Path) -> None:
    """Refused at start, the inbox untouched. Permissions must apply: when the tests run as
    root, the daemon runs without the capabilities that let root ignore them."""
    inbox, output = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    output.mkdir()
    source = inbox / "clip_16x8_01p_yuv420_8b.yuv"
    source.write_bytes(yuv_bytes())
    output.chmod(0o555)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "coolchic", "watch", str(inbox), "--output", str(output)],
            capture_output=True,
            text=True,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            preexec_fn=_without_root_overrides if os.getuid() == 0 else None,
            timeout=120,
        )
    finally:
        output.chmod(0o755)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert "not writable" in lines[0] and str(output) in lines[0]
    assert source.read_bytes() == yuv_bytes() and not any(output.iterdir())


def _without_root_overrides() -> None:
    """In the child, before exec: drop the capabilities that bypass file permissions.

    Dropped from the bounding set, they are not in the permitted set of the program that is
    executed next, so root is checked against file modes like any user.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop = 24
    for capability in (1, 2, 3):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
        if libc.prctl(pr_capbset_drop, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@contextlib.contextmanager
def _small_disk(folder: Path, size_kib: int) -> Iterator[bool]:
    """A tmpfs of ``size_kib`` at ``folder`` where mounting is allowed (root, no sandbox)."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = (
        shutil.which("mount") is not None
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(folder)],
            capture_output=True,
        ).returncode
        == 0
    )
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_a_full_output_disk_fails_the_file_with_no_space_and_the_daemon_goes_on(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path, max_attempts=2, retry_s=0.1)
    with _small_disk(config.output, 64) as mounted:
        if not mounted:
            pytest.skip("this sandbox does not allow mounting a small tmpfs")
        with open(config.output / "filler", "wb") as handle, contextlib.suppress(OSError):
            handle.write(b"\0" * (1 << 20))  # the disk is full
        victim = config.inbox / "victim_16x8_01p_yuv420_8b.yuv"
        victim.write_bytes(yuv_bytes(seed=1))
        with running(config):
            wait_for(lambda: (config.failed_dir / victim.name).exists(), "victim in failed/")
            [row] = rows(config)
            assert row.state == "failed" and row.attempts == 2
            assert "no space" in (row.error or "").lower(), row.error
            (config.output / "filler").unlink()  # the operator frees space
            again = config.inbox / "after_16x8_01p_yuv420_8b.yuv"
            again.write_bytes(yuv_bytes(seed=2))
            wait_for(lambda: state_of(config, again.name) == "done", "the next file")
        assert not temporaries(config.output)
    assert (config.failed_dir / f"{victim.name}.error.json").exists()


def test_a_damaged_journal_is_refused_with_one_line_and_nothing_moves(
    tmp_path: Path, capsys
) -> None:
    config = _config(tmp_path)
    source = config.inbox / "kept_16x8_01p_yuv420_8b.yuv"
    source.write_bytes(yuv_bytes())
    with Journal(config.state_dir / "journal.sqlite3") as journal:
        for index in range(300):
            journal.enqueue(f"/history/{index:03d}-{'h' * 150}.yuv", 1, 1, None)
    path = config.state_dir / "journal.sqlite3"
    data = bytearray(path.read_bytes())
    data[4096 : 3 * 4096] = b"\xa5" * (2 * 4096)
    path.write_bytes(bytes(data))
    before = path.read_bytes()
    code = main(["watch", str(config.inbox), "--state-dir", str(config.state_dir)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "damaged" in err[0] and "move it aside" in err[0]
    assert path.read_bytes() == before  # kept as it was: no history dropped
    assert source.read_bytes() == yuv_bytes()  # nothing encoded, moved or deleted
    assert not {"done", "failed"} & _tree(config.inbox)
    assert main(["watch", str(config.inbox), "--state-dir", str(config.state_dir)]) == 1


def test_sighup_reopens_the_log_file_and_the_daemon_goes_on(daemon) -> None:
    d: Daemon = daemon()
    log_file = d.base / "coolchic.log"
    d.start(group=("--log-file", str(log_file)))
    first = d.drop("first_16x8_01p_yuv420_8b.yuv", yuv_bytes(seed=1))
    d.wait_state(first.name, "done")
    rotated = log_file.with_name("coolchic.log.1")
    log_file.rename(rotated)  # what logrotate does, then it sends SIGHUP
    d.signal(signal.SIGHUP)
    d.wait(lambda: log_file.exists(), "the log file reopened")
    second = d.drop("second_16x8_01p_yuv420_8b.yuv", yuv_bytes(seed=2))
    d.wait_state(second.name, "done")
    d.wait(lambda: second.name in log_file.read_text(), "the new log to follow the daemon")
    assert d.stop() == 0
    assert first.name in rotated.read_text() and second.name not in rotated.read_text()
    assert "SIGHUP" in log_file.read_text()


def test_links_out_of_the_inbox_never_reach_outside_files(tmp_path: Path) -> None:
    config = _config(tmp_path, recursive=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    secret = elsewhere / "secret_16x8_01p_yuv420_8b.yuv"
    secret.write_bytes(yuv_bytes(seed=1))
    (config.inbox / "linked-folder").symlink_to(elsewhere, target_is_directory=True)
    (config.inbox / "linked_16x8_01p_yuv420_8b.yuv").symlink_to(secret)
    sub = config.inbox / "sub"
    sub.mkdir()
    (sub / "real_16x8_01p_yuv420_8b.yuv").write_bytes(yuv_bytes(seed=2))
    with running(config):
        wait_for(lambda: state_of(config, "real_16x8_01p_yuv420_8b.yuv") == "done", "sub/real")
        wait_for(lambda: (config.failed_dir / "linked_16x8_01p_yuv420_8b.yuv").is_symlink(), "link")
    by_name = {Path(r.path).name: r for r in rows(config)}
    assert set(by_name) == {"real_16x8_01p_yuv420_8b.yuv", "linked_16x8_01p_yuv420_8b.yuv"}
    assert "outside" in (by_name["linked_16x8_01p_yuv420_8b.yuv"].error or "")
    assert secret.read_bytes() == yuv_bytes(seed=1) and _tree(elsewhere) == {secret.name}
    assert (config.inbox / "linked-folder").is_symlink()
    assert not list(config.output.rglob("secret*"))
    _outside_untouched(tmp_path)
