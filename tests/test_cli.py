"""The command line: exit codes, one-line errors, JSON output, fast start without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from coolchic import __version__
from coolchic.cli import main
from tests.conftest import MakeYuv, planes_bytes, yuv420_planes


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coolchic", *args], capture_output=True, text=True, timeout=120
    )


def test_version_and_module_entry_point() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert __version__ in result.stdout


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from coolchic.cli import main\n"
        "code = main(['--help'])\n"
        "assert code == 0, code\n"
        "assert 'torch' not in sys.modules, 'torch imported by --help'\n"
        "assert main(['info', '--help']) == 0\n"
        "assert 'torch' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "info" in result.stdout and "metrics" in result.stdout


def test_info_json_has_the_parsed_fields(make_yuv: MakeYuv, capsys: pytest.CaptureFixture) -> None:
    path = make_yuv("my_clip_2_16x8_29.97p_yuv420_8b.yuv", frames=2, extra=b"\x00" * 7)
    assert main(["info", "--json", str(path)]) == 0
    captured = capsys.readouterr()
    payload = json.loads(captured.out)
    assert payload["name"] == "my_clip_2"
    assert (payload["width"], payload["height"], payload["bit_depth"]) == (16, 8, 8)
    assert payload["fps"] == pytest.approx(29.97)
    assert (payload["frame_bytes"], payload["frames"], payload["trailing_bytes"]) == (192, 2, 7)
    y = yuv420_planes(16, 8, 8, seed=0)[0]
    assert payload["planes"]["Y"]["min"] == int(y.min())
    assert payload["planes"]["Y"]["max"] == int(y.max())
    assert payload["planes"]["Y"]["mean"] == pytest.approx(float(y.mean()), abs=1e-3)
    assert "not a whole number of frames" in payload["warnings"][0]
    assert "not a whole number of frames" in captured.err


def test_info_text_lists_fields_and_planes(
    make_yuv: MakeYuv, capsys: pytest.CaptureFixture
) -> None:
    path = make_yuv("cam_16x8_50p_yuv420_10b.yuv", bit_depth=10)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    for expected in ("cam", "16x8", "yuv420", "10", "384", "Y", "U", "V"):
        assert expected in out


def test_info_png(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from PIL import Image

    Image.fromarray(np.zeros((6, 10, 3), np.uint8)).save(tmp_path / "black.png")
    assert main(["info", "--json", str(tmp_path / "black.png")]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert (payload["width"], payload["height"], payload["format"]) == (10, 6, "rgb")


def test_user_error_is_one_line_exit_1_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "cut_16x8_01p_yuv420_8b.yuv"
    path.write_bytes(b"\x00" * 10)
    result = run_cli("info", str(path))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"error: {path}: truncated, 10 bytes is 182 bytes short of one "
        "16x8 8-bit 4:2:0 frame (192 bytes)"
    ]
    verbose = run_cli("-v", "info", str(path))
    assert verbose.returncode == 1
    assert "Traceback" in verbose.stderr


def test_bad_name_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "clip.yuv"
    path.write_bytes(b"\x00" * 10)
    assert main(["info", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "does not follow the convention <name>_<W>x<H>_<fps>p_yuv420_<8|10>b.yuv" in err


@pytest.mark.parametrize(
    "args",
    [
        ["info"],
        ["info", "/nonexistent/x_2x2_1p_yuv420_8b.yuv"],
        ["--device", "tpu", "info", "x"],
        ["--threads", "0", "info", "x"],
        ["no-such-command"],
        ["--log-format", "xml", "info", "x"],
    ],
)
def test_usage_errors_exit_2(args: list[str], capsys: pytest.CaptureFixture) -> None:
    assert main(args) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_metrics_identical_and_perturbed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    planes = yuv420_planes(16, 8, 8, seed=4)
    a = tmp_path / "a_16x8_01p_yuv420_8b.yuv"
    b = tmp_path / "b_16x8_01p_yuv420_8b.yuv"
    a.write_bytes(planes_bytes(planes))
    y = planes[0].astype(np.int16)
    y[0, :] = np.where(y[0, :] < 128, y[0, :] + 10, y[0, :] - 10)  # 16 samples off by 10
    b.write_bytes(planes_bytes((y.astype(np.uint8), planes[1], planes[2])))

    assert main(["metrics", "--json", str(a), str(a)]) == 0
    same = json.loads(capsys.readouterr().out)
    assert same["psnr_y"] == same["psnr_yuv"] == same["psnr_yuv_611"] == "inf"

    assert main(["metrics", "--json", str(a), str(b)]) == 0
    diff = json.loads(capsys.readouterr().out)
    mse_y = 16 * 100 / 128
    assert diff["psnr_y"] == pytest.approx(10 * np.log10(255**2 / mse_y), abs=1e-5)
    assert diff["psnr_yuv"] == pytest.approx(10 * np.log10(255**2 / (4 * mse_y / 6)), abs=1e-5)
    assert diff["psnr_u"] == "inf"

    assert main(["metrics", str(a), str(b)]) == 0
    assert "psnr_yuv_611" in capsys.readouterr().out


def test_metrics_refuses_mismatched_inputs(
    make_yuv: MakeYuv, capsys: pytest.CaptureFixture
) -> None:
    a = make_yuv("a_16x8_01p_yuv420_8b.yuv")
    b = make_yuv("b_8x4_01p_yuv420_8b.yuv", width=8, height=4)
    assert main(["metrics", str(a), str(b)]) == 1
    assert "cannot compare" in capsys.readouterr().err


def test_json_log_format_writes_one_object_per_line(make_yuv: MakeYuv, tmp_path: Path) -> None:
    path = make_yuv("warn_16x8_01p_yuv420_8b.yuv", extra=b"\x01")
    log_file = tmp_path / "coolchic.log"
    result = run_cli("--log-format", "json", "-q", "--log-file", str(log_file), "info", str(path))
    assert result.returncode == 0
    records = [json.loads(line) for line in result.stderr.splitlines()]
    assert records and records[0]["level"] == "warning"
    assert "not a whole number of frames" in records[0]["message"]
    assert "not a whole number of frames" in log_file.read_text()
