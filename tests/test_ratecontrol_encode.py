"""``--target-psnr``/``--target-bpp`` through the real encoder, on a tiny smooth frame."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from coolchic.cli import main
from coolchic.decoder import decode
from coolchic.io import read_frame
from coolchic.io.metrics import frame_metrics
from coolchic.ratecontrol import PSNR_TOLERANCE_DB
from coolchic.train.recipes import get_recipe

ENCODE = ["-q", "--threads", "1", "encode", "--recipe", "instant"]


def _smooth_yuv(path: Path, width: int = 48, height: int = 32) -> Path:
    """Gentle gradients and waves: a frame whose PSNR moves with λ over a wide range."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    y = 128 + 60 * np.sin(xx / 7.0) * np.cos(yy / 5.0) + xx
    u = np.full((height // 2, width // 2), 110.0) + yy[::2, ::2]
    v = np.full((height // 2, width // 2), 140.0) - xx[::2, ::2] / 2
    planes = [np.clip(np.rint(p), 0, 255).astype(np.uint8) for p in (y, u, v)]
    path.write_bytes(b"".join(p.tobytes() for p in planes))
    return path


@pytest.fixture
def smooth(tmp_path: Path) -> Path:
    return _smooth_yuv(tmp_path / f"waves_{48}x{32}_01p_yuv420_8b.yuv")


def test_target_psnr_keeps_the_trial_nearest_the_target_and_reports_every_trial(
    smooth: Path, tmp_path: Path
) -> None:
    out, report_path = tmp_path / "w.cool", tmp_path / "w.json"
    args = [*ENCODE, str(smooth), "-o", str(out), "--report", str(report_path)]
    assert main([*args, "--target-psnr", "30"]) == 0
    report = json.loads(report_path.read_text())
    trials = report["trials"]
    assert report["target"]["metric"] == "psnr" and report["target"]["value"] == 30
    assert trials[0]["kind"] == "full" and all(t["kind"] != "full" for t in trials[1:])
    errors = [abs(t["psnr_db"] - 30) for t in trials]
    kept = errors.index(min(errors))
    # The stream written is the kept trial's: its own decode gives the reported figures.
    decoded = decode(out.read_bytes())
    psnr = frame_metrics(read_frame(smooth), decoded).psnr
    assert psnr == pytest.approx(trials[kept]["psnr_db"], abs=1e-3)
    assert report["lmbda"] == trials[kept]["lmbda"]
    assert report["bpp"] == pytest.approx(8 * out.stat().st_size / (48 * 32))
    assert report["target"]["met"] == (min(errors) <= PSNR_TOLERANCE_DB)
    assert min(errors) < 1.0  # a few trials get near on this frame, met or not
    assert report["iterations"] == sum(t["iterations"] for t in trials)
    full = get_recipe("instant").iterations
    assert trials[0]["iterations"] == full
    assert all(0 < t["iterations"] < full for t in trials[1:])
    # The budget counts iterations, not seconds: the same seed writes the same bytes again.
    again = tmp_path / "again.cool"
    assert main([*ENCODE, str(smooth), "-o", str(again), "--target-psnr", "30"]) == 0
    assert again.read_bytes() == out.read_bytes()


def test_unreachable_targets_fail_with_one_line_and_write_nothing(
    smooth: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "x.cool"
    assert main([*ENCODE, str(smooth), "-o", str(out), "--target-bpp", "0.0001"]) == 1
    assert "out of reach" in capsys.readouterr().err
    assert main([*ENCODE, str(smooth), "-o", str(out), "--target-psnr", "80"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "80 dB is out of reach" in err[0]
    assert list(tmp_path.iterdir()) == [smooth]


@pytest.mark.parametrize(
    "extra",
    [
        ["--target-psnr", "30", "--lmbda", "1e-3"],
        ["--target-psnr", "30", "--target-bpp", "1"],
        ["--target-psnr", "30,32"],
        ["--target-bpp", "-1"],
    ],
)
def test_target_usage_errors(smooth: Path, extra: list[str], capsys) -> None:
    assert main([*ENCODE, str(smooth), *extra]) == 2
    assert "target" in capsys.readouterr().err


def test_batch_refuses_a_target_with_lmbda_before_encoding(
    smooth: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    command = ["-q", "batch", str(smooth), "--output", str(out), "--target-psnr", "30"]
    assert main([*command, "--lmbda", "1e-3"]) == 2
    assert "--lmbda cannot be given with a target" in capsys.readouterr().err
    assert main([*command, "--target-bpp", "1"]) == 2
    assert not out.exists()


def test_batch_with_a_target_reports_it_and_a_rerun_skips_the_output(
    smooth: Path, tmp_path: Path
) -> None:
    """One target keeps the plain output name; several get ``.b<BPP>`` names
    (``test_defaults``). The target is in the settings, so the re-run finds the output up to
    date."""
    out = tmp_path / "out"
    command = ["-q", "--threads", "1", "batch", "--recipe", "instant", str(smooth)]
    command += ["--output", str(out), "--target-bpp", "2"]
    assert main(command) == 0
    stem = smooth.stem
    names = {p.name for p in out.iterdir() if not p.name.startswith(".")}
    assert names == {f"{stem}.cool", f"{stem}.json"}
    report = json.loads((out / f"{stem}.json").read_text())
    assert report["target"]["value"] == 2 and report["trials"]
    assert report["settings"]["target"] == {"metric": "bpp", "value": 2}
    assert report["settings"]["lmbda"] is None
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert main(command) == 0
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
