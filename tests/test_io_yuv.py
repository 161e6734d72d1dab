"""YUV files: first-frame reading with bounded memory, byte order, and every rejection."""

from __future__ import annotations

import dataclasses
import logging
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from coolchic.errors import InputError
from coolchic.io import Frame, inspect_yuv, read_frame, read_yuv_frame, write_yuv
from coolchic.io.naming import parse_yuv_name
from tests.conftest import MakeYuv, planes_bytes, yuv420_planes


def test_8bit_frame_planes_are_normalised_and_shaped(make_yuv: MakeYuv) -> None:
    path = make_yuv("cam_a_16x8_25p_yuv420_8b.yuv")
    frame = read_yuv_frame(path)
    y, _, v = yuv420_planes(16, 8, 8, seed=0)
    assert frame.format == "yuv420" and frame.bit_depth == 8
    assert (frame.width, frame.height) == (16, 8)
    assert [p.shape for p in frame.planes] == [(8, 16), (4, 8), (4, 8)]
    assert all(p.dtype == np.float32 for p in frame.planes)
    np.testing.assert_allclose(frame.planes[0], y / 255.0, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(frame.integer_planes()[2], v)
    assert frame.source is not None and frame.source.name == "cam_a"


def test_10bit_is_little_endian_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "ten_4x2_01p_yuv420_10b.yuv"
    y = np.array([[513, 0, 1023, 1], [2, 3, 4, 5]], dtype="<u2")  # 513 = 0x0201
    u = np.array([[700, 512]], dtype="<u2")[:, :2].reshape(1, 2)
    v = np.array([[1, 1022]], dtype="<u2")
    path.write_bytes(planes_bytes((y, u, v)))
    assert path.read_bytes()[:2] == b"\x01\x02"  # low byte first
    frame = read_yuv_frame(path)
    assert frame.integer_planes()[0][0, 0] == 513
    assert frame.planes[0][0, 2] == pytest.approx(1.0)
    assert frame.planes[0][0, 0] == pytest.approx(513 / 1023)

    copy = tmp_path / "copy_4x2_01p_yuv420_10b.yuv"
    write_yuv(copy, frame)
    assert copy.read_bytes() == path.read_bytes()


@pytest.mark.parametrize("bit_depth", [8, 10])
def test_write_then_read_is_exact(tmp_path: Path, bit_depth: int) -> None:
    planes = yuv420_planes(32, 16, bit_depth, seed=3)
    frame = Frame.from_integer_planes(planes, fmt="yuv420", bit_depth=bit_depth)
    path = tmp_path / f"rt_32x16_01p_yuv420_{bit_depth}b.yuv"
    write_yuv(path, frame)
    assert path.stat().st_size == 32 * 16 * 3 // 2 * (1 if bit_depth == 8 else 2)
    back = read_yuv_frame(path)
    for original, read in zip(planes, back.integer_planes(), strict=True):
        np.testing.assert_array_equal(original, read)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_only_the_first_frame_is_read(make_yuv: MakeYuv) -> None:
    path = make_yuv("multi_16x8_60p_yuv420_8b.yuv", frames=3)
    info = inspect_yuv(path)
    assert (info.frames, info.frame_bytes, info.trailing_bytes) == (3, 192, 0)
    frame = read_yuv_frame(path)
    np.testing.assert_array_equal(frame.integer_planes()[0], yuv420_planes(16, 8, 8, seed=0)[0])
    assert not np.array_equal(frame.integer_planes()[0], yuv420_planes(16, 8, 8, seed=1)[0])


def test_partial_last_frame_is_read_with_a_warning(
    make_yuv: MakeYuv, caplog: pytest.LogCaptureFixture
) -> None:
    path = make_yuv("partial_16x8_01p_yuv420_8b.yuv", frames=2, extra=b"\x00" * 50)
    with caplog.at_level(logging.WARNING, logger="coolchic"):
        frame = read_yuv_frame(path)
    assert frame.width == 16
    assert "not a whole number of frames" in caplog.text
    assert "50 bytes left over" in caplog.text
    assert inspect_yuv(path).frames == 2


def test_truncated_file_says_how_many_bytes_are_missing(tmp_path: Path) -> None:
    path = tmp_path / "short_16x8_01p_yuv420_8b.yuv"
    path.write_bytes(b"\x10" * 100)
    with pytest.raises(InputError, match=r"truncated, 100 bytes is 92 bytes short of one .*192"):
        read_yuv_frame(path)


def test_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty_16x8_01p_yuv420_8b.yuv"
    path.touch()
    with pytest.raises(InputError, match="the file is empty"):
        read_yuv_frame(path)


def test_directory_and_missing_file_are_refused(tmp_path: Path) -> None:
    directory = tmp_path / "dir_16x8_01p_yuv420_8b.yuv"
    directory.mkdir()
    with pytest.raises(InputError, match="not a regular file"):
        read_yuv_frame(directory)
    with pytest.raises(InputError, match="no such file"):
        read_yuv_frame(tmp_path / "gone_16x8_01p_yuv420_8b.yuv")


def test_odd_size_file_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "odd_15x8_01p_yuv420_8b.yuv"
    path.write_bytes(b"\x00" * 1000)
    with pytest.raises(InputError, match="width 15 is odd"):
        read_yuv_frame(path)


def test_10bit_sample_above_1023_is_refused(tmp_path: Path) -> None:
    y, u, v = yuv420_planes(8, 4, 10, seed=1)
    v = v.copy()
    v[1, 2] = 1024
    path = tmp_path / "hot_8x4_01p_yuv420_10b.yuv"
    path.write_bytes(planes_bytes((y, u, v)))
    with pytest.raises(InputError, match=r"value 1024 in plane V at row 1, column 2 is above 1023"):
        read_yuv_frame(path)


def test_big_endian_10bit_is_caught(tmp_path: Path) -> None:
    planes = yuv420_planes(8, 4, 10, seed=2)
    path = tmp_path / "be_8x4_01p_yuv420_10b.yuv"
    path.write_bytes(b"".join(p.astype(">u2").tobytes() for p in planes))
    with pytest.raises(InputError, match="big-endian"):
        read_yuv_frame(path)


def test_multi_gigabyte_sparse_file_is_read_with_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "huge_64x64_50p_yuv420_10b.yuv"
    first = yuv420_planes(64, 64, 10, seed=7)
    with open(path, "wb") as handle:
        handle.write(planes_bytes(first))
        handle.truncate(5 * 1024**3 + 123)  # sparse: no real disk use
    frame_bytes = 64 * 64 * 3
    tracemalloc.start()
    try:
        frame = read_yuv_frame(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * frame_bytes, f"peak {peak} bytes for a {frame_bytes}-byte frame"
    np.testing.assert_array_equal(frame.integer_planes()[0], first[0])
    assert inspect_yuv(path).frames == (5 * 1024**3 + 123) // frame_bytes
    assert os.stat(path).st_blocks * 512 < 10 * 1024**2


def test_read_frame_dispatches_and_rejects_other_types(make_yuv: MakeYuv, tmp_path: Path) -> None:
    assert read_frame(make_yuv()).format == "yuv420"
    other = tmp_path / "image.bmp"
    other.write_bytes(b"BM")
    with pytest.raises(InputError, match=r"unsupported input type '\.bmp'"):
        read_frame(other)


def test_444_file_reads_full_resolution_chroma(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    planes = tuple(rng.integers(0, 256, (4, 6)).astype(np.uint8) for _ in range(3))
    path = tmp_path / "full_6x4_01p_yuv444_8b.yuv"
    path.write_bytes(planes_bytes(planes))
    frame = read_yuv_frame(path)
    assert frame.format == "yuv444"
    assert [p.shape for p in frame.planes] == [(4, 6)] * 3
    assert parse_yuv_name(path).chroma_format == "yuv444"


@pytest.mark.parametrize("bit_depth", [8, 10])
def test_frame_samples_rebuild_the_exact_frame(make_yuv: MakeYuv, bit_depth: int) -> None:
    path = make_yuv(f"cam_16x8_25p_yuv420_{bit_depth}b.yuv", bit_depth=bit_depth)
    frame = read_yuv_frame(path)
    samples = frame.to_samples()
    assert samples.data == path.read_bytes()  # the first frame's bytes, as stored
    rebuilt = samples.to_frame()
    assert rebuilt.source == frame.source and rebuilt.bit_depth == bit_depth
    for before, after in zip(frame.planes, rebuilt.planes, strict=True):
        np.testing.assert_array_equal(before, after)


def test_frame_samples_of_the_wrong_length_are_refused(make_yuv: MakeYuv) -> None:
    samples = read_yuv_frame(make_yuv()).to_samples()
    cut = dataclasses.replace(samples, data=samples.data[:-1])
    with pytest.raises(ValueError, match="expected 192 bytes, found 191"):
        cut.to_frame()
