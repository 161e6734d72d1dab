"""benchmarks/rd.py: its BD-rate self-test, and several seeds summarised without encoding."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from tests.conftest import BENCHMARKS, load_benchmark

RD_SCRIPT = BENCHMARKS / "rd.py"


@pytest.fixture(scope="module")
def rd() -> ModuleType:
    return load_benchmark("rd.py")


def test_self_test_passes() -> None:
    result = subprocess.run(
        [sys.executable, str(RD_SCRIPT), "--self-test"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "several seeds" in result.stdout and "FAIL" not in result.stdout


def test_seeds_become_one_coolchic_setting_per_seed_and_lambda(rd: ModuleType) -> None:
    args = rd.parse_args(["--inputs", "x.yuv", "--lmbdas", "1e-3,4e-3", "--seeds", "0,3"])
    assert args.settings["coolchic"] == ["1e-3@0", "4e-3@0", "1e-3@3", "4e-3@3"]
    assert args.seed_list == [0, 3]
    single = rd.parse_args(["--inputs", "x.yuv", "--lmbdas", "1e-3", "--seed", "2"])
    assert single.settings["coolchic"] == ["1e-3"] and single.seed_list == [2]


@pytest.mark.parametrize(
    "arguments",
    [["--seeds", "1"], ["--seeds", "1,1"], ["--seeds", "0,1", "--seed", "2"], ["--seeds", "a,b"]],
)
def test_bad_seeds_are_refused(rd: ModuleType, arguments: list[str]) -> None:
    with pytest.raises(SystemExit):
        rd.parse_args(["--inputs", "x.yuv", *arguments])


def _write_run(directory: Path, curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    with open(directory / "rd.tsv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=["input", "codec", "bpp", "psnr", "metric"], delimiter="\t"
        )
        writer.writeheader()
        for codec, (rates, psnrs) in curves.items():
            for rate, psnr in zip(rates, psnrs, strict=True):
                writer.writerow(
                    {"input": "img", "codec": codec, "bpp": rate, "psnr": psnr, "metric": "psnr"}
                )
    (directory / "summary.json").write_text(json.dumps({"recipe": "fast"}), encoding="utf-8")


def test_resummarise_gives_each_seed_and_their_mean(tmp_path: Path) -> None:
    rates = np.array([0.12, 0.25, 0.5, 0.9, 1.6])
    psnrs = np.array([29.0, 31.5, 34.2, 36.8, 39.9])
    _write_run(
        tmp_path,
        {
            "x265": (rates, psnrs),
            "coolchic-seed0": (0.90 * rates, psnrs),  # -10 %
            "coolchic-seed1": (0.95 * rates, psnrs),  # -5 %
            "coolchic-seed2": (1.03 * rates, psnrs),  # +3 %
        },
    )
    result = subprocess.run(
        [sys.executable, str(RD_SCRIPT), "--resummarise", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    versus = summary["inputs"]["img"]["bd_rate_coolchic_vs"]["x265"]
    assert versus["per_seed"] == pytest.approx({"0": -10.0, "1": -5.0, "2": 3.0})
    assert versus["percent"] == pytest.approx(-4.0)
    assert versus["standard_error"] == pytest.approx(np.std([-10, -5, 3], ddof=1) / np.sqrt(3))
    assert summary["mean_bd_rate_coolchic_vs"]["x265"]["mean_percent"] == pytest.approx(-4.0)
    assert "mean of 3 seeds" in result.stdout
