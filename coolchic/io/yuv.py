"""Planar YUV files: inspect, read the first frame (memory bounded by one frame), write.

Layout per frame: Y (H x W) then U then V (each (H/2) x (W/2) for 4:2:0, H x W for 4:4:4);
8-bit is one byte per sample, 10-bit a little-endian uint16 holding 0..1023.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coolchic.errors import InputError
from coolchic.io.files import atomic_write_bytes, read_prefix, regular_file_size
from coolchic.io.frame import Frame, max_sample_value, plane_shapes, sample_dtype
from coolchic.io.naming import ChromaFormat, YuvName, parse_yuv_name

logger = logging.getLogger(__name__)


def bytes_per_sample(bit_depth: int) -> int:
    return 1 if bit_depth <= 8 else 2


def frame_size_bytes(width: int, height: int, chroma_format: ChromaFormat, bit_depth: int) -> int:
    """Bytes of one frame: the sum of the three planes times the bytes per sample."""
    n_samples = sum(rows * cols for rows, cols in plane_shapes(chroma_format, width, height))
    return n_samples * bytes_per_sample(bit_depth)


@dataclass(frozen=True)
class YuvFileInfo:
    """What a YUV file holds, from its name and its size, without reading its samples."""

    path: Path
    fields: YuvName
    file_bytes: int
    frame_bytes: int
    frames: int
    trailing_bytes: int
    warnings: tuple[str, ...]


def inspect_yuv(path: str | Path) -> YuvFileInfo:
    """Check the name and the size of a YUV file.

    Raises:
        InputError: bad name, missing/unreadable/empty file, or shorter than one frame.
    """
    fields = parse_yuv_name(path)
    file_bytes = regular_file_size(path)
    frame_bytes = frame_size_bytes(
        fields.width, fields.height, fields.chroma_format, fields.bit_depth
    )
    description = (
        f"{fields.width}x{fields.height} {fields.bit_depth}-bit "
        f"{fields.chroma_format[3:6].replace('420', '4:2:0').replace('444', '4:4:4')} frame"
    )
    if file_bytes == 0:
        raise InputError(f"{path}: the file is empty (one {description} is {frame_bytes} bytes)")
    if file_bytes < frame_bytes:
        missing = frame_bytes - file_bytes
        raise InputError(
            f"{path}: truncated, {file_bytes} bytes is {missing} bytes short of one "
            f"{description} ({frame_bytes} bytes)"
        )
    frames, trailing = divmod(file_bytes, frame_bytes)
    warnings: list[str] = []
    if trailing:
        warnings.append(
            f"{path}: size {file_bytes} is not a whole number of frames "
            f"({frames} frames of {frame_bytes} bytes and {trailing} bytes left over); "
            "the first frame is complete and is used"
        )
    return YuvFileInfo(
        path=Path(path),
        fields=fields,
        file_bytes=file_bytes,
        frame_bytes=frame_bytes,
        frames=frames,
        trailing_bytes=trailing,
        warnings=tuple(warnings),
    )


def read_yuv_frame(path: str | Path) -> Frame:
    """Read the first frame of a YUV file; memory use is bounded by one frame.

    Raises:
        InputError: see :func:`inspect_yuv`, plus a 10-bit sample above 1023.
    """
    info = inspect_yuv(path)
    for warning in info.warnings:
        logger.warning("%s", warning)
    fields = info.fields
    data = read_prefix(path, info.frame_bytes)
    samples = np.frombuffer(data, dtype=sample_dtype(fields.bit_depth))
    planes = _split_planes(samples, fields.chroma_format, fields.width, fields.height)
    _check_sample_range(planes, fields.bit_depth, path)
    return Frame.from_integer_planes(
        planes, fmt=fields.chroma_format, bit_depth=fields.bit_depth, source=fields
    )


def _split_planes(
    samples: np.ndarray, chroma_format: ChromaFormat, width: int, height: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    planes = []
    offset = 0
    for rows, cols in plane_shapes(chroma_format, width, height):
        planes.append(samples[offset : offset + rows * cols].reshape(rows, cols))
        offset += rows * cols
    return planes[0], planes[1], planes[2]


def _check_sample_range(planes: tuple[np.ndarray, ...], bit_depth: int, path: str | Path) -> None:
    peak = max_sample_value(bit_depth)
    for plane_name, plane in zip("YUV", planes, strict=True):
        if int(plane.max()) > peak:
            row, col = np.unravel_index(int(np.argmax(plane > peak)), plane.shape)
            raise InputError(
                f"{path}: {bit_depth}-bit sample value {int(plane[row, col])} in plane "
                f"{plane_name} at row {row}, column {col} is above {peak} "
                "(expected little-endian samples in the low bits; is the file 16-bit "
                "or big-endian?)"
            )


def yuv_frame_bytes(frame: Frame) -> bytes:
    """Serialise a YUV frame as planar samples (8-bit bytes or little-endian uint16)."""
    if frame.format not in ("yuv420", "yuv444"):
        raise ValueError(f"cannot write a {frame.format} frame as YUV")
    return frame.to_samples().data


def write_yuv(path: str | Path, frame: Frame) -> None:
    """Write one frame to ``path`` atomically (the name is not checked here)."""
    atomic_write_bytes(path, yuv_frame_bytes(frame))
