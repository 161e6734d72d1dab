"""λ lists and the λ tag that names the outputs of one rate point."""

from __future__ import annotations

import dataclasses
from pathlib import Path, PurePath

import pytest

from coolchic.defaults import lmbda_tag, parse_lmbdas
from coolchic.jobs.inputs import checkpoint_path, output_paths


@pytest.mark.parametrize(
    ("lmbda", "tag"),
    [
        (1e-3, "1e-3"),
        (4e-4, "4e-4"),
        (2.5e-4, "2.5e-4"),
        (0.02, "2e-2"),
        (1.0, "1e0"),
        (150.0, "1.5e2"),
        (1.25e-5, "1.25e-5"),
    ],
)
def test_lmbda_tag_is_short_and_exact(lmbda: float, tag: str) -> None:
    assert lmbda_tag(lmbda) == tag
    assert float(tag) == lmbda


def test_parse_lmbdas_keeps_the_order_and_refuses_repeats_and_bad_values() -> None:
    assert parse_lmbdas("4e-4, 1e-3,0.004") == (4e-4, 1e-3, 4e-3)
    assert parse_lmbdas("1e-3") == (1e-3,)
    for bad in ("1e-3,1e-3", "0.001,1e-3", "1e-3,", "x", "0", "inf", "1e-3,-1"):
        with pytest.raises(ValueError):
            parse_lmbdas(bad)


def test_rate_points_have_their_own_outputs_and_checkpoints(tmp_path: Path) -> None:
    relative = PurePath("sub/pic_16x8_01p_yuv420_8b.yuv")
    single = output_paths(relative, tmp_path)
    first = output_paths(relative, tmp_path, "l1e-3")
    second = output_paths(relative, tmp_path, "l4e-4")
    assert single[0].name == "pic_16x8_01p_yuv420_8b.cool"
    assert first == (
        tmp_path / "sub/pic_16x8_01p_yuv420_8b.l1e-3.cool",
        tmp_path / "sub/pic_16x8_01p_yuv420_8b.l1e-3.json",
    )
    assert len({single, first, second}) == 3
    checkpoints = {checkpoint_path(tmp_path, relative, point) for point in (None, "l1e-3", "l4e-4")}
    assert len(checkpoints) == 3


def test_target_points_are_named_by_their_target_and_fingerprinted_apart(tmp_path: Path) -> None:
    from coolchic.daemon.config import WatchConfig
    from coolchic.jobs.settings import EncodeSettings, rate_points
    from coolchic.ratecontrol import RateTarget

    base = EncodeSettings(recipe="instant")
    psnr = [dataclasses.replace(base, target=RateTarget("psnr", v)) for v in (34.0, 36.5)]
    assert [tag for tag, _ in rate_points(psnr)] == ["p34", "p36.5"]
    assert rate_points(psnr[:1]) == [(None, psnr[0])]
    assert dataclasses.replace(base, target=RateTarget("bpp", 0.25)).point_tag() == "b0.25"
    assert base.point_tag() == "l1e-3"
    # A target decides the bytes and λ does not: the fingerprint follows the target only.
    fingerprints = {s.fingerprint() for s in psnr}
    assert len(fingerprints) == 2 and base.fingerprint() not in fingerprints
    assert dataclasses.replace(psnr[0], lmbda=4e-3).fingerprint() == psnr[0].fingerprint()
    config = WatchConfig(
        inbox=tmp_path,
        output=tmp_path / "out",
        state_dir=tmp_path / "state",
        settings=base,
        targets=(RateTarget("bpp", 0.5), RateTarget("bpp", 1.0)),
    )
    assert [(tag, s.target) for tag, s in config.points] == [
        ("b0.5", RateTarget("bpp", 0.5)),
        ("b1", RateTarget("bpp", 1.0)),
    ]
    cool, _ = output_paths(PurePath("a/pic_16x8_01p_yuv420_8b.yuv"), tmp_path, "b0.5")
    assert cool == tmp_path / "a/pic_16x8_01p_yuv420_8b.b0.5.cool"
