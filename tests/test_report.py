"""``coolchic report``: curves from batch reports, the anchor's BD-rate, the HTML page."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from coolchic.cli import main
from coolchic.evaluation import report as rd_report
from coolchic.evaluation.x265 import AnchorPoint
from coolchic.io import Frame, read_frame
from tests.conftest import planes_bytes, yuv420_planes


def _fake_report(folder: Path, name: str, lmbda: float, bpp: float, psnr: float, **extra) -> None:
    payload = {
        "input": f"/data/{name}",
        "input_sha256": name,
        "recipe": "fast",
        "lmbda": lmbda,
        "bpp": bpp,
        "psnr_yuv": psnr,
        "encode_seconds": 10.0,
        **extra,
    }
    (folder / f"{name}.l{lmbda:g}.json").write_text(json.dumps(payload))


def test_reports_group_into_curves_sorted_by_rate(tmp_path: Path) -> None:
    for lmbda, bpp, psnr in ((1e-3, 0.5, 35.0), (2e-2, 0.1, 28.0), (4e-3, 0.25, 31.0)):
        _fake_report(tmp_path, "a.yuv", lmbda, bpp, psnr)
    sub = tmp_path / "sub"
    sub.mkdir()
    _fake_report(sub, "b.yuv", 1e-3, 0.7, 36.0)
    (tmp_path / "summary.json").write_text(json.dumps({"not": "a report"}))
    (tmp_path / "broken.json").write_text("{")
    hidden = tmp_path / ".coolchic-checkpoints"
    hidden.mkdir()
    _fake_report(hidden, "c.yuv", 1e-3, 0.7, 36.0)

    curves, problems = rd_report.read_curves(tmp_path)
    assert [c.input_path.name for c in curves] == ["a.yuv", "b.yuv"]
    assert [p.bpp for p in curves[0].points] == [0.1, 0.25, 0.5]
    assert [p.lmbda for p in curves[0].points] == [2e-2, 4e-3, 1e-3]
    assert len(problems) == 1 and "broken.json" in problems[0]


def test_anchor_gives_the_bd_rate_of_the_curves(tmp_path: Path, monkeypatch) -> None:
    """A fake x265 that needs exactly 10 % more bits than coolchic at every PSNR: −9.09 %."""
    source_path = tmp_path / "pic_64x32_01p_yuv420_8b.yuv"
    source_path.write_bytes(planes_bytes(yuv420_planes(64, 32, 8, seed=5)))
    source = read_frame(source_path)
    rng = np.random.default_rng(0)
    noisy: dict[int, Frame] = {}
    for qp, sigma in zip((22, 27, 32, 37, 42), (1.0, 2.0, 4.0, 8.0, 16.0), strict=True):
        planes = tuple(
            np.clip(np.rint(p + rng.normal(0, sigma, p.shape)), 0, 255).astype(np.uint16)
            for p in source.integer_planes()
        )
        noisy[qp] = Frame.from_integer_planes(planes, fmt="yuv420", bit_depth=8)
    anchor_bpp = {22: 3.0, 27: 2.0, 32: 1.2, 37: 0.7, 42: 0.4}

    def fake_x265(frame: Frame, qp: int, work: Path, **_: object) -> AnchorPoint:
        bits = round(anchor_bpp[qp] * frame.width * frame.height)
        return AnchorPoint(qp, bits, noisy[qp], 0.1, 0.1, "main", "yuv420p")

    monkeypatch.setattr(rd_report, "x265_point", fake_x265)
    import hashlib

    sha = hashlib.sha256(source_path.read_bytes()).hexdigest()
    for qp, decoded in noisy.items():
        psnr = rd_report.frame_metrics(source, decoded).as_dict()["psnr_yuv"]
        payload = {
            "input": str(source_path),
            "input_sha256": sha,
            "recipe": "fast",
            "lmbda": 1e-4 * qp,
            "bpp": anchor_bpp[qp] / 1.1,
            "psnr_yuv": psnr,
        }
        (tmp_path / f"pic.l{qp}.json").write_text(json.dumps(payload))
    curves, _ = rd_report.read_curves(tmp_path)
    rd_report.anchor_curve(curves[0], qps=(22, 27, 32, 37, 42))
    assert curves[0].bd is not None
    assert curves[0].bd.percent == pytest.approx(100 * (1 / 1.1 - 1), abs=0.05)  # whole bits

    source_path.write_bytes(planes_bytes(yuv420_planes(64, 32, 8, seed=6)))  # input changed
    curves, _ = rd_report.read_curves(tmp_path)
    rd_report.anchor_curve(curves[0], qps=(22, 27, 32, 37, 42))
    assert curves[0].bd is None and "changed" in curves[0].anchor_note


def test_report_of_a_batch_folder_prints_tables_and_writes_the_page(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(2):
        planes = yuv420_planes(16, 8, 8, seed=20 + index)  # two curves of two points
        (folder / f"pic{index}_16x8_01p_yuv420_8b.yuv").write_bytes(planes_bytes(planes))
    out = tmp_path / "out"
    batch = ["--threads", "1", "batch", str(folder), "--output", str(out), "--recipe", "instant"]
    assert main([*batch, "--lmbda", "2e-2,1e-3"]) == 0
    capsys.readouterr()

    page = tmp_path / "report.html"
    assert main(["report", str(out), "--html", str(page), "--json"]) == 0
    curves = json.loads(capsys.readouterr().out)
    assert [Path(c["input"]).name for c in curves] == [
        "pic0_16x8_01p_yuv420_8b.yuv",
        "pic1_16x8_01p_yuv420_8b.yuv",
    ]
    for curve in curves:
        assert sorted(p["lmbda"] for p in curve["points"]) == [1e-3, 2e-2]
        rates = [p["bpp"] for p in curve["points"]]
        assert rates == sorted(rates)
    text = page.read_text()
    assert text.count("<h2>") == 2
    assert text.count("<figure>") == 2 * (1 + 2)  # the source and each decoded point
    assert "data:image/png;base64," in text


def test_report_of_a_folder_without_reports_fails_clearly(tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path)]) == 1
    assert "no coolchic report" in capsys.readouterr().err
