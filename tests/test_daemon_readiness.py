"""Readiness: stable size and mtime for a while, and a whole frame, on an injected clock."""

from __future__ import annotations

import os
from pathlib import Path

from coolchic.daemon.readiness import PNG_TRAILER, StabilityTracker


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


FRAME_16x8 = 16 * 8 * 3 // 2


def _tracker(stable_s: float = 2.0) -> tuple[StabilityTracker, FakeClock]:
    clock = FakeClock()
    return StabilityTracker(stable_s, clock=clock, incomplete_timeout_s=30.0), clock


def _followed_frame(tmp_path: Path) -> tuple[StabilityTracker, FakeClock, Path]:
    """A tracker following a complete 16x8 frame, polled once (its timer runs from now)."""
    tracker, clock = _tracker()
    path = tmp_path / "a_16x8_01p_yuv420_8b.yuv"
    path.write_bytes(b"\0" * FRAME_16x8)
    tracker.observe(path)
    assert tracker.poll() == ([], [])
    return tracker, clock, path


def test_ready_only_after_the_file_stopped_changing(tmp_path: Path) -> None:
    tracker, clock, path = _followed_frame(tmp_path)
    clock.now += 1.9
    assert tracker.poll() == ([], [])
    with open(path, "ab") as handle:  # a writer appends: the timer restarts
        handle.write(b"\0" * FRAME_16x8)
    clock.now += 1.0
    assert tracker.poll() == ([], [])
    clock.now += 1.9
    assert tracker.poll() == ([], [])
    clock.now += 0.2
    assert tracker.poll() == ([path], [])
    assert path not in tracker


def test_an_event_restarts_the_timer_and_a_scan_does_not(tmp_path: Path) -> None:
    tracker, clock, path = _followed_frame(tmp_path)
    clock.now += 1.5
    tracker.observe(path)  # a rescan: no effect on the timer
    clock.now += 0.6
    assert tracker.poll() == ([path], [])
    tracker.observe(path)
    tracker.poll()
    clock.now += 1.5
    tracker.touch(path)  # an event (say, a close-write with the same size): restart
    clock.now += 0.6
    assert tracker.poll() == ([], [])
    clock.now += 2.0
    assert tracker.poll() == ([path], [])


def test_mtime_change_with_same_size_restarts_the_timer(tmp_path: Path) -> None:
    tracker, clock, path = _followed_frame(tmp_path)
    clock.now += 1.5
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000))
    tracker.poll()
    clock.now += 1.5
    assert tracker.poll() == ([], [])


def test_incomplete_files_wait_then_are_taken_to_fail(tmp_path: Path) -> None:
    tracker, clock = _tracker()
    short = tmp_path / "a_16x8_01p_yuv420_8b.yuv"
    short.write_bytes(b"\0" * (FRAME_16x8 - 1))
    png = tmp_path / "b.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    empty = tmp_path / "badly named.yuv"
    empty.write_bytes(b"")
    named_badly = tmp_path / "no name.yuv"
    named_badly.write_bytes(b"\0" * 5)
    for path in (short, png, empty, named_badly):
        tracker.observe(path)
    tracker.poll()
    clock.now += 5
    assert tracker.poll() == ([named_badly], [])  # fails right away with its reason
    with open(png, "ab") as handle:
        handle.write(PNG_TRAILER)
    tracker.poll()
    clock.now += 5
    assert tracker.poll() == ([png], [])
    clock.now += 30
    ready, gone = tracker.poll()
    assert sorted(ready) == sorted([short, empty]) and gone == []


def test_gone_files_are_dropped(tmp_path: Path) -> None:
    tracker, clock, path = _followed_frame(tmp_path)
    path.unlink()
    clock.now += 5
    assert tracker.poll() == ([], [path])
    assert len(tracker) == 0
