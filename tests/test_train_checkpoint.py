"""Checkpoints: a killed and resumed encode writes the same bytes; bad checkpoints are set aside."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from coolchic.codec import EncoderConfig, encode
from coolchic.io.frame import Frame
from coolchic.train.checkpoint import INTERVAL_ENV, Checkpoint, TrainingState
from coolchic.train.progress import FORECAST_PHASE, ProgressEvent
from tests.conftest import yuv420_planes

ROOT = Path(__file__).resolve().parent.parent
CONFIG = EncoderConfig(lmbda=2e-3, recipe="instant", seed=3)


class Interrupted(Exception):
    """Stands for a kill: raised from the progress callback in the middle of a phase."""


def _frame(seed: int = 0) -> Frame:
    planes = yuv420_planes(24, 16, 8, seed=seed)
    return Frame(tuple(p.astype("float32") / 255 for p in planes), "yuv420", 8)  # type: ignore[arg-type]


def _interrupt_at(phase: str, iteration: int):
    def progress(event: ProgressEvent) -> None:
        if event.phase == phase and event.iteration >= iteration and event.kind == "progress":
            raise Interrupted

    return progress


@pytest.fixture(autouse=True)
def _checkpoint_every_iteration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(INTERVAL_ENV, "0")


@pytest.mark.parametrize("phase, iteration", [("main", 60), ("integer", 85)])
def test_an_interrupted_encode_resumes_to_the_same_bytes(
    tmp_path: Path, phase: str, iteration: int
) -> None:
    frame = _frame()
    plain = encode(frame, CONFIG).bitstream
    path = tmp_path / "run.pt"
    with pytest.raises(Interrupted):
        encode(frame, CONFIG, _interrupt_at(phase, iteration), checkpoint_path=path)
    saved = Checkpoint(path, "unused").path
    assert saved.is_file()
    events: list[ProgressEvent] = []
    resumed = encode(frame, CONFIG, events.append, checkpoint_path=path)
    assert resumed.bitstream == plain
    forecast, restart = events[0], events[1]
    assert restart.kind == "start" and "resumed" in restart.message
    assert restart.iteration >= iteration - 20  # it went on, it did not start over
    # The expected time announced first counts only what is left.
    assert forecast.phase == FORECAST_PHASE and forecast.iteration == restart.iteration
    with_checkpoints = encode(_frame(), CONFIG, checkpoint_path=tmp_path / "other.pt")
    assert with_checkpoints.bitstream == plain  # saving never changes the result


def test_a_resume_on_other_threads_writes_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The training rounds the same at any thread count, so the thread count is not part of
    what a checkpoint must match, and a resume on more threads finishes the same encode."""
    from coolchic.model import pointwise

    monkeypatch.setattr(pointwise, "CHUNK_COLUMNS", 32)  # several chunks to spread
    before = torch.get_num_threads()
    frame = _frame(seed=2)
    path = tmp_path / "run.pt"
    try:
        torch.set_num_threads(1)
        plain = encode(frame, CONFIG).bitstream
        with pytest.raises(Interrupted):
            encode(frame, CONFIG, _interrupt_at("main", 60), checkpoint_path=path)
        torch.set_num_threads(2)
        events: list[ProgressEvent] = []
        resumed = encode(frame, CONFIG, events.append, checkpoint_path=path)
    finally:
        torch.set_num_threads(before)
    assert "resumed" in events[1].message
    assert resumed.bitstream == plain


def test_bad_checkpoints_are_set_aside_with_a_warning(tmp_path: Path, caplog) -> None:
    frame = _frame(seed=1)
    plain = encode(frame, CONFIG).bitstream
    good = tmp_path / "good.pt"
    with pytest.raises(Interrupted):
        encode(frame, CONFIG, _interrupt_at("main", 40), checkpoint_path=good)
    payload = good.read_bytes()

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(payload[: len(payload) // 2])
    other_settings = tmp_path / "other.pt"
    other_settings.write_bytes(payload)
    older = tmp_path / "older.pt"
    saved = torch.load(good, weights_only=True)
    torch.save({**saved, "format": 0}, older)
    cases = {
        truncated: (CONFIG, "cannot be read"),
        other_settings: (EncoderConfig(lmbda=4e-3, recipe="instant", seed=3), "another input"),
        older: (CONFIG, "format 0"),
    }
    for path, (config, reason) in cases.items():
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="coolchic"):
            events: list[ProgressEvent] = []
            encoded = encode(frame, config, events.append, checkpoint_path=path)
        warnings = [r.getMessage() for r in caplog.records if "checkpoint" in r.getMessage()]
        assert len(warnings) == 1 and reason in warnings[0], warnings
        assert path.with_name(path.name + ".rejected").is_file()
        assert events[0].phase == FORECAST_PHASE and events[0].iteration == 0
        assert events[1].stage == "warmup"  # a full encode, from the start
        if config == CONFIG:
            assert encoded.bitstream == plain


def _state(iteration: int, size: int) -> TrainingState:
    weights = {"w": torch.full((size,), float(iteration))}
    return TrainingState(
        seed=0,
        phase_index=0,
        iteration=iteration,
        since_best=0,
        iterations_done=iteration,
        recoveries=0,
        lr_scale=1.0,
        model=weights,
        best_state=weights,
        best=(1.0, 1.0, 1.0),
        optimizer=None,
        generator=torch.Generator().get_state(),
        torch_rng=torch.get_rng_state(),
        lmbda=1e-3,
    )


def test_a_kill_during_a_checkpoint_write_leaves_the_previous_one_usable(tmp_path: Path) -> None:
    path = tmp_path / "ck.pt"
    Checkpoint(path, "key").save(_state(0, 10))
    writer = (
        "import sys, torch\n"
        "from coolchic.train.checkpoint import Checkpoint\n"
        "from tests.test_train_checkpoint import _state\n"
        "store = Checkpoint(sys.argv[1], 'key', interval_s=0)\n"
        "print('ready', flush=True)\n"
        "for i in range(1, 10**6):\n"
        "    store.save(_state(i, 4_000_000))\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", writer, str(path)],
        stdout=subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        cwd=ROOT,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == b"ready"
    time.sleep(1.5)  # several 16 MB writes, the kill lands in one of them
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    state = Checkpoint(path, "key").load()
    assert state is not None
    assert torch.equal(state.model["w"], torch.full_like(state.model["w"], state.iteration))
    assert not path.with_name(path.name + ".rejected").exists()


def test_a_checkpoint_that_cannot_be_written_never_stops_the_encode(tmp_path: Path, caplog) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the checkpoint folder should be")
    frame = _frame(seed=2)
    with caplog.at_level(logging.WARNING, logger="coolchic"):
        encoded = encode(frame, CONFIG, checkpoint_path=blocker / "run.pt")
    assert encoded.bitstream == encode(frame, CONFIG).bitstream
    warnings = [r.getMessage() for r in caplog.records if "checkpoint" in r.getMessage()]
    assert len(warnings) == 1 and "goes on without checkpoints" in warnings[0]
