"""Reading and writing pictures: YUV 4:2:0/4:4:4 (8/10-bit) files, PNG images, metrics.

torch-free on purpose: the CLI's ``info`` and ``metrics`` commands start fast.
"""

from __future__ import annotations

from pathlib import Path

from coolchic.errors import InputError
from coolchic.io.frame import Frame, FrameFormat, FrameSamples
from coolchic.io.metrics import FrameMetrics, frame_metrics
from coolchic.io.naming import (
    YuvName,
    format_yuv_name,
    is_yuv_path,
    name_from_stem,
    parse_yuv_name,
)
from coolchic.io.png import is_png_path, read_png, write_png
from coolchic.io.yuv import YuvFileInfo, inspect_yuv, read_yuv_frame, write_yuv

__all__ = [
    "Frame",
    "FrameFormat",
    "FrameMetrics",
    "FrameSamples",
    "YuvFileInfo",
    "YuvName",
    "check_output_suffix",
    "format_yuv_name",
    "frame_metrics",
    "inspect_yuv",
    "is_png_path",
    "is_yuv_path",
    "name_from_stem",
    "parse_yuv_name",
    "read_frame",
    "read_png",
    "read_yuv_frame",
    "write_frame",
    "write_png",
    "write_yuv",
]


def read_frame(path: str | Path) -> Frame:
    """Read the first frame of a ``.yuv`` file or a ``.png`` image (by extension)."""
    if is_yuv_path(path):
        return read_yuv_frame(path)
    if is_png_path(path):
        return read_png(path)
    raise InputError(
        f"{path}: unsupported input type {Path(path).suffix or '(no extension)'!r}, "
        "expected a .yuv file or a .png image"
    )


def write_frame(path: str | Path, frame: Frame) -> None:
    """Write a frame as PNG (RGB frames) or YUV (YUV frames), atomically."""
    if frame.format == "rgb":
        write_png(path, frame)
    else:
        write_yuv(path, frame)


def check_output_suffix(path: Path, frame_format: str) -> None:
    """A reconstruction is written as .png for RGB and .yuv for YUV frames."""
    expected = ".png" if frame_format == "rgb" else ".yuv"
    if path.suffix.lower() != expected:
        raise InputError(
            f"{path}: a {frame_format} frame is written as {expected}, not "
            f"{path.suffix or '(no extension)'}"
        )
