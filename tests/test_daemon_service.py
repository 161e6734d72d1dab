"""The watch service in-process (in a thread, stopped by its Event): retries and policies."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePath

import pytest

from coolchic.daemon.journal import JobRow, Journal
from coolchic.daemon.service import DaemonError, StateLock, WatchConfig, WatchService
from coolchic.jobs.inputs import output_paths
from coolchic.jobs.run import run_job
from coolchic.jobs.settings import EncodeSettings
from coolchic.jobs.types import JobRequest
from tests.conftest import planes_bytes, yuv420_planes

INSTANT = EncodeSettings(recipe="instant", threads=1, device="cpu")


def _config(tmp_path: Path, **overrides: object) -> WatchConfig:
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    values: dict[str, object] = {
        "inbox": inbox,
        "output": tmp_path / "out",
        "state_dir": tmp_path / "state",
        "settings": INSTANT,
        "stable_s": 0.2,
        "rescan_s": 0.3,
        "tick_s": 0.05,
    }
    values.update(overrides)
    return WatchConfig(**values)  # type: ignore[arg-type]


@contextmanager
def running(config: WatchConfig) -> Iterator[WatchService]:
    service = WatchService(config)
    stop = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            service.run(stop)
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=target)
    thread.start()
    try:
        yield service
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive()
    assert not errors, errors


def rows(config: WatchConfig) -> list[JobRow]:
    try:
        with Journal(config.state_dir / "journal.sqlite3", read_only=True) as journal:
            return journal.rows()
    except Exception:
        return []


def wait_for(condition: Callable[[], object], what: str, timeout_s: float = 60.0) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def state_of(config: WatchConfig, name: str) -> str | None:
    found = [r.state for r in rows(config) if Path(r.path).name == name]
    return found[-1] if found else None


def yuv(seed: int = 0) -> bytes:
    return planes_bytes(yuv420_planes(16, 8, 8, seed=seed))


def test_transient_errors_are_retried_then_failed(tmp_path: Path) -> None:
    config = _config(tmp_path, retry_s=0.2, max_attempts=2)
    healed = config.inbox / "healed_16x8_01p_yuv420_8b.yuv"
    stuck = config.inbox / "stuck_16x8_01p_yuv420_8b.yuv"
    healed.write_bytes(yuv(1))
    stuck.write_bytes(yuv(2))
    for name in (healed.name, stuck.name):  # a folder where the stream goes: OSError
        (config.output / name.replace(".yuv", ".cool")).mkdir(parents=True)
    with running(config):
        wait_for(lambda: state_of(config, healed.name) == "retry", "a retry of healed")
        (config.output / "healed_16x8_01p_yuv420_8b.cool").rmdir()
        wait_for(lambda: state_of(config, healed.name) == "done", "healed to be done")
        wait_for(lambda: state_of(config, stuck.name) == "failed", "stuck to fail")
        wait_for(lambda: (config.failed_dir / f"{stuck.name}.error.json").exists(), "error json")
        wait_for(lambda: (config.failed_dir / stuck.name).exists(), "the input in failed/")
        error = json.loads((config.failed_dir / f"{stuck.name}.error.json").read_text())
        assert error["error_kind"] == "transient" and error["attempts"] == 2
        by_name = {Path(r.path).name: r for r in rows(config)}
        assert by_name[healed.name].attempts == 2
        assert by_name[stuck.name].attempts == 2
        assert (config.done_dir / healed.name).exists()
        # the cause fixed, the operator moves the input back (mv keeps size and mtime)
        (config.output / "stuck_16x8_01p_yuv420_8b.cool").rmdir()
        (config.failed_dir / stuck.name).rename(stuck)
        wait_for(lambda: state_of(config, stuck.name) == "done", "stuck to be done")
    assert [Path(r.path).name for r in rows(config)] == [healed.name, stuck.name]
    assert rows(config)[1].attempts == 1


def test_keep_policy_never_reencodes_until_the_file_changes(tmp_path: Path) -> None:
    config = _config(tmp_path, on_success="keep")
    source = config.inbox / "kept_16x8_01p_yuv420_8b.yuv"
    source.write_bytes(yuv(3))
    cool, report = output_paths(PurePath(source.name), config.output)
    assert run_job(JobRequest(source, cool, report, INSTANT)).status == "done"  # made by batch
    made_at = report.stat().st_mtime_ns
    with running(config):
        wait_for(lambda: state_of(config, source.name) == "done", "the up-to-date file")
        time.sleep(1.0)  # several rescans (every 0.3 s) must not queue it again
        assert len(rows(config)) == 1
        assert report.stat().st_mtime_ns == made_at  # recognised, not encoded again
        source.write_bytes(yuv(4))  # new content: a new version, encoded
        wait_for(lambda: len(rows(config)) == 2 and rows(config)[-1].state == "done", "v2")
    assert source.exists()
    assert json.loads(report.read_text())["input_sha256"] == hashlib.sha256(yuv(4)).hexdigest()
    assert report.stat().st_mtime_ns != made_at
    assert [r.disposed_to for r in rows(config)] == ["kept", "kept"]


def test_refused_symlink_and_second_daemon(tmp_path: Path) -> None:
    config = _config(tmp_path)
    secret = tmp_path / "secret_16x8_01p_yuv420_8b.yuv"
    secret.write_bytes(yuv(5))
    link = config.inbox / secret.name
    link.symlink_to(secret)
    with running(config):
        wait_for(lambda: state_of(config, link.name) == "failed", "the link to be refused")
        with pytest.raises(DaemonError, match="another coolchic watch"):
            WatchService(config).run(threading.Event())
        with pytest.raises(DaemonError), StateLock(config.state_dir.resolve()):
            pass
    for clash in ({"output": config.inbox}, {"state_dir": tmp_path}):
        with pytest.raises(DaemonError, match="cannot be the inbox"):
            WatchService(dataclasses.replace(config, **clash)).run(threading.Event())
    failed = rows(config)[0]
    assert failed.error is not None and "outside" in failed.error
    assert secret.exists() and not any(config.output.glob("*.cool"))
    assert (config.failed_dir / link.name).is_symlink()  # the link moved, never its target
