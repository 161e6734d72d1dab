"""PNG input: RGB as is, grayscale and palette converted, alpha and 16-bit refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from coolchic.errors import InputError
from coolchic.io import Frame, read_frame, read_png, write_png


def _rgb(width: int = 10, height: int = 6) -> np.ndarray:
    rng = np.random.default_rng(5)
    return rng.integers(0, 256, (height, width, 3)).astype(np.uint8)


def test_rgb_png_round_trips(tmp_path: Path) -> None:
    pixels = _rgb()
    path = tmp_path / "in.png"
    Image.fromarray(pixels).save(path)
    frame = read_png(path)
    assert (frame.format, frame.bit_depth, frame.width, frame.height) == ("rgb", 8, 10, 6)
    np.testing.assert_array_equal(np.stack(frame.integer_planes(), axis=-1), pixels)
    out = tmp_path / "out.png"
    write_png(out, frame)
    np.testing.assert_array_equal(np.asarray(Image.open(out)), pixels)


def test_grayscale_and_palette_are_converted(tmp_path: Path) -> None:
    gray = np.arange(60, dtype=np.uint8).reshape(6, 10) * 4
    Image.fromarray(gray).save(tmp_path / "gray.png")
    frame = read_frame(tmp_path / "gray.png")
    for plane in frame.integer_planes():
        np.testing.assert_array_equal(plane, gray)

    palette_image = Image.fromarray(_rgb()).convert("P", palette=Image.Palette.ADAPTIVE)
    palette_image.save(tmp_path / "palette.png")
    expected = np.asarray(palette_image.convert("RGB"))
    frame = read_png(tmp_path / "palette.png")
    np.testing.assert_array_equal(np.stack(frame.integer_planes(), axis=-1), expected)


def test_opaque_alpha_is_accepted_and_real_alpha_refused(tmp_path: Path) -> None:
    rgba = np.concatenate([_rgb(), np.full((6, 10, 1), 255, np.uint8)], axis=-1)
    Image.fromarray(rgba).save(tmp_path / "opaque.png")
    assert read_png(tmp_path / "opaque.png").format == "rgb"
    rgba[2, 3, 3] = 128
    Image.fromarray(rgba).save(tmp_path / "alpha.png")
    with pytest.raises(InputError, match="transparent pixels"):
        read_png(tmp_path / "alpha.png")


def test_16bit_png_is_refused(tmp_path: Path) -> None:
    deep = (np.arange(60, dtype=np.uint16).reshape(6, 10) * 1000).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    with pytest.raises(InputError, match="16-bit PNG is not supported"):
        read_png(tmp_path / "deep.png")


def test_not_a_png_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fake.png"
    path.write_bytes(b"this is not an image at all, just text")
    with pytest.raises(InputError, match="not a PNG file"):
        read_png(path)
    truncated = tmp_path / "cut.png"
    Image.fromarray(_rgb(64, 64)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    with pytest.raises(InputError, match="cannot decode PNG"):
        read_png(truncated)


def test_yuv_frame_cannot_be_written_as_png(tmp_path: Path) -> None:
    planes = (np.zeros((4, 4), np.uint8), np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8))
    frame = Frame.from_integer_planes(planes, fmt="yuv420", bit_depth=8)
    with pytest.raises(ValueError, match="cannot write a yuv420 frame as PNG"):
        write_png(tmp_path / "x.png", frame)
