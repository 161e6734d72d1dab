"""The event handler only queues and never raises; the supervisor revives a dead observer."""

from __future__ import annotations

import queue
import time
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileOpenedEvent,
)

from coolchic.daemon.observer import RESCAN, InboxEventHandler, ObserverSupervisor


def test_handler_queues_paths_and_survives_anything() -> None:
    paths: queue.Queue[Path] = queue.Queue()
    handler = InboxEventHandler(paths)
    handler.dispatch(FileCreatedEvent("/in/a.yuv"))
    handler.dispatch(FileMovedEvent("/in/.a.yuv.part", "/in/b.yuv"))
    handler.dispatch(FileClosedEvent("/in/c.yuv"))
    handler.dispatch(FileDeletedEvent("/in/d.yuv"))
    handler.dispatch(FileOpenedEvent("/in/ignored.yuv"))
    handler.dispatch(DirCreatedEvent("/in/sub"))
    handler.on_any_event(object())  # type: ignore[arg-type]  (broken event: logged, not raised)

    class Full(queue.Queue):
        def put_nowait(self, item: object) -> None:
            raise queue.Full

    InboxEventHandler(Full()).on_any_event(FileCreatedEvent("/in/x.yuv"))
    queued = []
    while not paths.empty():
        queued.append(paths.get_nowait())
    assert queued == [
        Path("/in/a.yuv"),
        Path("/in/.a.yuv.part"),
        Path("/in/b.yuv"),
        Path("/in/c.yuv"),
        Path("/in/d.yuv"),
        RESCAN,
    ]


def _wait_for_path(paths: queue.Queue[Path], wanted: Path, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if paths.get(timeout=0.1) == wanted:
                return True
        except queue.Empty:
            pass
    return False


def test_supervisor_restarts_a_dead_observer(tmp_path: Path) -> None:
    paths: queue.Queue[Path] = queue.Queue()
    supervisor = ObserverSupervisor(
        tmp_path, InboxEventHandler(paths), poll_s=0.1, restart_delay_s=0.0
    )
    assert supervisor.start()
    try:
        assert supervisor.check() is False
        first = tmp_path / "a.yuv"
        first.write_bytes(b"x")
        assert _wait_for_path(paths, first)
        observer = supervisor.observer
        assert observer is not None
        observer.stop()  # dies, as after an exception in a handler
        observer.join(5)
        assert not supervisor.is_alive()
        assert supervisor.check() is True
        assert supervisor.is_alive() and supervisor.restarts == 1
        second = tmp_path / "b.yuv"
        second.write_bytes(b"x")
        assert _wait_for_path(paths, second)
    finally:
        supervisor.stop()
    assert not supervisor.is_alive()


def test_supervisor_reports_a_folder_it_cannot_watch(tmp_path: Path) -> None:
    supervisor = ObserverSupervisor(
        tmp_path / "missing", InboxEventHandler(queue.Queue()), restart_delay_s=0.0
    )
    assert supervisor.start() is False
    assert not supervisor.is_alive()
    (tmp_path / "missing").mkdir()
    assert supervisor.check() is True
    supervisor.stop()
