"""The memory budget: the estimator, refusal up front, and jobs waiting for memory."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest

from coolchic.cli import main
from coolchic.codec import SMALL_DECODER
from coolchic.jobs.run import job_memory_estimate
from coolchic.jobs.settings import EncodeSettings
from coolchic.jobs.types import JobId
from coolchic.model.config import ModelConfig, parse_synthesis
from coolchic.resources import (
    BASE_BYTES,
    MemoryGate,
    ResourceError,
    check_fits,
    estimate_encode_bytes,
    memory_budget,
)
from tests.daemon_harness import yuv_bytes
from tests.test_daemon_service import _config, rows, running, wait_for

INSTANT = EncodeSettings(recipe="instant", threads=1, device="cpu")


def test_the_estimate_grows_with_the_frame_and_the_decoder() -> None:
    sizes = [(16, 16), (192, 128), (416, 240), (1920, 1080), (3840, 2160)]
    small = [estimate_encode_bytes(w, h, SMALL_DECODER) for w, h in sizes]
    assert small == sorted(small) and len(set(small)) == len(small)
    assert small[0] >= BASE_BYTES
    wider = dataclasses.replace(
        SMALL_DECODER, synthesis=parse_synthesis("16-1-linear-relu,3-1-linear-none")
    )
    for width, height in sizes:
        assert (
            estimate_encode_bytes(width, height, ModelConfig())
            > estimate_encode_bytes(width, height, wider)
            > estimate_encode_bytes(width, height, SMALL_DECODER)
        )
        with_ifce = dataclasses.replace(SMALL_DECODER, ifce_features=2, hyper_grids=3)
        assert estimate_encode_bytes(width, height, with_ifce) > estimate_encode_bytes(
            width, height, SMALL_DECODER
        )


def test_a_frame_that_cannot_fit_is_refused_with_one_line() -> None:
    assert check_fits(192, 128, SMALL_DECODER, 4 << 30) > 0
    with pytest.raises(ResourceError, match=r"16000x16000 frame needs about .* GiB") as caught:
        check_fits(16000, 16000, SMALL_DECODER, memory_budget())
    assert "\n" not in str(caught.value)
    assert memory_budget(123) == 123


def test_the_gate_admits_while_the_estimates_fit() -> None:
    gate = MemoryGate(1000)
    assert gate.admits(900)  # nothing runs: always
    gate.hold(JobId(1), 900)
    assert not gate.admits(200) and gate.admits(100) and gate.admits(None)
    gate.release(JobId(1))
    assert gate.admits(1000) and MemoryGate(None).admits(10**15)


def test_batch_refuses_a_frame_beyond_the_limit_before_any_work(tmp_path: Path, capsys) -> None:
    big = tmp_path / "big_1920x1080_01p_yuv420_8b.yuv"
    big.write_bytes(bytes(1920 * 1080 * 3 // 2))
    small = tmp_path / "small_16x8_01p_yuv420_8b.yuv"
    small.write_bytes(yuv_bytes())
    out = tmp_path / "out"
    options = ["--threads", "1", "--memory-limit", "1G"]
    command = ["batch", str(tmp_path), "--output", str(out), "--recipe", "instant", "--json"]
    assert main([*options, *command]) == 3
    assert (out / "small_16x8_01p_yuv420_8b.cool").exists()
    assert not (out / "big_1920x1080_01p_yuv420_8b.cool").exists()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    [big_result] = [line for line in lines if "big_" in json.dumps(line)]
    assert "1920x1080 frame needs about" in json.dumps(big_result)


def test_the_daemon_runs_jobs_one_after_the_other_when_memory_fits_one(
    tmp_path: Path, caplog
) -> None:
    settings = dataclasses.replace(INSTANT, memory_limit=BASE_BYTES + (100 << 20))
    config = _config(tmp_path, jobs=2, settings=settings)
    names = [f"mem{index}_64x64_01p_yuv420_8b.yuv" for index in range(2)]
    for index, name in enumerate(names):
        (config.inbox / name).write_bytes(yuv_bytes(64, 64, seed=index))
    huge = config.inbox / "huge_4000x4000_01p_yuv420_8b.yuv"
    huge.write_bytes(yuv_bytes())  # refused from its name, before it is read
    with caplog.at_level(logging.INFO, logger="coolchic"), running(config):
        wait_for(lambda: sum(r.state == "done" for r in rows(config)) == 2, "both encodes", 120)
        wait_for(lambda: (config.failed_dir / huge.name).exists(), "the huge frame refused")
    done = sorted((r for r in rows(config) if r.state == "done"), key=lambda r: r.started_at)
    assert done[0].finished_at is not None and done[1].started_at is not None
    assert done[1].started_at >= done[0].finished_at  # never side by side
    assert all(r.attempts == 1 for r in done)
    [failed] = [r for r in rows(config) if r.state == "failed"]
    assert failed.error_kind == "permanent" and "4000x4000 frame needs about" in (
        failed.error or ""
    )
    assert any(getattr(r, "event", "") == "waiting" for r in caplog.records)
    estimate = job_memory_estimate(config.inbox / "done" / names[0], settings)
    assert estimate is not None and 2 * estimate > settings.memory_limit  # type: ignore[operator]
