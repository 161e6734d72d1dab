"""Kill -9 in the middle of a training, run again: the encode resumes and writes the same bytes.

For each way of running an encode: ``coolchic encode --checkpoint``, ``coolchic batch`` and the
``watch`` daemon. Checkpoints are written at every iteration here (the environment's interval
is 0) so that a kill always finds one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coolchic.jobs.inputs import output_paths
from coolchic.jobs.run import run_job
from coolchic.jobs.settings import EncodeSettings
from coolchic.jobs.types import JobRequest
from coolchic.train.checkpoint import INTERVAL_ENV
from tests.daemon_harness import ROOT, process_gone, yuv_bytes

NAME = "resume_48x32_01p_yuv420_8b.yuv"
COMMAND = [sys.executable, "-m", "coolchic", "--threads", "1"]


@pytest.fixture(autouse=True)
def _checkpoint_every_iteration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(INTERVAL_ENV, "0")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))


def _reference(tmp_path: Path, source: Path) -> bytes:
    """The same encode, uninterrupted and without checkpoints."""
    cool, report = output_paths(Path(source.name), tmp_path / "reference")
    settings = EncodeSettings(recipe="instant", threads=1, device="cpu")
    assert run_job(JobRequest(source, cool, report, settings)).status == "done"
    return cool.read_bytes()


def _kill_when(process: subprocess.Popen, appeared: Path | None, pattern: str = "*.pt") -> None:
    """SIGKILL ``process`` once a checkpoint exists under ``appeared`` (it is mid-training)."""
    assert appeared is not None
    deadline = time.monotonic() + 120
    while not any(appeared.rglob(pattern)):
        assert process.poll() is None, "the encode ended before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint was written"
        time.sleep(0.01)
    time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait(10)


def test_encode_with_checkpoint_killed_and_run_again(tmp_path: Path) -> None:
    source = tmp_path / NAME
    source.write_bytes(yuv_bytes(48, 32, seed=4))
    checkpoint = tmp_path / "state" / "run.pt"
    args = ["encode", str(source), "-o", str(tmp_path / "out.cool"), "--recipe", "instant"]
    args += ["--checkpoint", str(checkpoint)]
    first = subprocess.Popen(
        [*COMMAND, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _kill_when(first, checkpoint.parent)
    assert not (tmp_path / "out.cool").exists()

    again = subprocess.run([*COMMAND, *args], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "resumed from a checkpoint" in again.stderr
    assert (tmp_path / "out.cool").read_bytes() == _reference(tmp_path, source)
    assert not checkpoint.exists()  # deleted once the stream is written


def test_batch_killed_and_run_again(tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    source = inbox / NAME
    source.write_bytes(yuv_bytes(48, 32, seed=5))
    output = tmp_path / "out"
    args = ["batch", str(inbox), "--output", str(output), "--recipe", "instant"]
    first = subprocess.Popen(
        [*COMMAND, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _kill_when(first, output)
    assert not (output / "resume_48x32_01p_yuv420_8b.cool").exists()

    again = subprocess.run([*COMMAND, *args], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "resumed from a checkpoint" in again.stderr
    stream = (output / "resume_48x32_01p_yuv420_8b.cool").read_bytes()
    assert stream == _reference(tmp_path, source)
    assert not any((output / ".coolchic-checkpoints").glob("*.pt"))


def test_watch_killed_mid_encode_resumes_after_the_restart(daemon, tmp_path: Path) -> None:
    d = daemon().start()
    source = d.drop(NAME, yuv_bytes(48, 32, seed=6))
    worker = d.wait(lambda: (row := d.row(NAME)) is not None and row.worker_pid, "a worker")
    assert d.process is not None
    _kill_when(d.process, d.state / "checkpoints")
    d.wait(lambda: process_gone(worker), "the worker to exit", 15, alive=False)

    d.start()
    done = d.wait_state(NAME, "done")
    assert d.stop() == 0
    assert done.attempts == 1
    assert any("resumed from a checkpoint" in e.get("message", "") for e in d.events())
    stream = (d.output / "resume_48x32_01p_yuv420_8b.cool").read_bytes()
    assert stream == _reference(tmp_path, d.inbox / "done" / source.name)
    assert not any((d.state / "checkpoints").glob("*.pt"))
    assert os.path.exists(d.inbox / "done" / NAME)
