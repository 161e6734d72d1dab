"""Reading the raw planar files that x265, aomenc and the official decoder write."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from coolchic.evaluation.x265 import read_raw_frame
from coolchic.io import read_frame
from tests.conftest import MakeYuv


@pytest.mark.parametrize("bit_depth", [8, 10])
def test_a_raw_frame_reads_back_as_the_frame_it_holds(make_yuv: MakeYuv, bit_depth: int) -> None:
    path = make_yuv(f"clip_16x8_01p_yuv420_{bit_depth}b.yuv", bit_depth=bit_depth, frames=2)
    like = read_frame(path)
    again = read_raw_frame(path, like)  # the second frame is ignored
    assert (again.format, again.bit_depth) == ("yuv420", bit_depth)
    for ours, theirs in zip(again.integer_planes(), like.integer_planes(), strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_a_short_raw_file_is_refused(make_yuv: MakeYuv, tmp_path: Path) -> None:
    like = read_frame(make_yuv())
    short = tmp_path / "short.raw"
    short.write_bytes(bytes(100))
    with pytest.raises(RuntimeError, match="expected at least 192"):
        read_raw_frame(short, like)
