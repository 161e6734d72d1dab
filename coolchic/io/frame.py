"""The in-memory picture every encode starts from and every decode ends with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from coolchic.io.naming import YuvName

FrameFormat = Literal["yuv420", "yuv444", "rgb"]

PLANE_NAMES: dict[FrameFormat, tuple[str, str, str]] = {
    "yuv420": ("Y", "U", "V"),
    "yuv444": ("Y", "U", "V"),
    "rgb": ("R", "G", "B"),
}


def max_sample_value(bit_depth: int) -> int:
    """The peak sample value, 2^bits - 1 (255 or 1023)."""
    return (1 << bit_depth) - 1


def sample_dtype(bit_depth: int) -> np.dtype:
    """uint8 for 8-bit, little-endian uint16 for more (the byte order of every YUV tool)."""
    return np.dtype(np.uint8) if bit_depth <= 8 else np.dtype("<u2")


def plane_shapes(fmt: FrameFormat, width: int, height: int) -> tuple[tuple[int, int], ...]:
    """(rows, cols) of each plane: chroma is halved in both directions for 4:2:0."""
    if fmt == "yuv420":
        chroma = (height // 2, width // 2)
        return ((height, width), chroma, chroma)
    return ((height, width),) * 3


@dataclass(frozen=True, eq=False)
class Frame:
    """One picture as three float32 planes normalised to [0, 1] (sample / (2^bits - 1)).

    ``planes`` are Y, U, V for the YUV formats (U and V at (H/2)x(W/2) for 4:2:0) and R, G, B
    for RGB. ``source`` carries the parsed file-name fields when the frame came from a YUV file.
    """

    planes: tuple[np.ndarray, np.ndarray, np.ndarray]
    format: FrameFormat
    bit_depth: int
    source: YuvName | None = None

    def __post_init__(self) -> None:
        if len(self.planes) != 3:
            raise ValueError(f"a frame has 3 planes, found {len(self.planes)}")
        height, width = self.planes[0].shape
        expected = plane_shapes(self.format, width, height)
        found = tuple(plane.shape for plane in self.planes)
        if found != expected:
            raise ValueError(f"{self.format} plane shapes: expected {expected}, found {found}")

    @property
    def height(self) -> int:
        return int(self.planes[0].shape[0])

    @property
    def width(self) -> int:
        return int(self.planes[0].shape[1])

    @property
    def plane_names(self) -> tuple[str, str, str]:
        return PLANE_NAMES[self.format]

    def integer_planes(self) -> tuple[np.ndarray, ...]:
        """Planes as integer samples (uint8 for 8-bit, uint16 otherwise), rounded half-to-even."""
        peak = max_sample_value(self.bit_depth)
        dtype = np.uint8 if self.bit_depth <= 8 else np.uint16
        return tuple(
            np.clip(np.rint(plane.astype(np.float64) * peak), 0, peak).astype(dtype)
            for plane in self.planes
        )

    @classmethod
    def from_integer_planes(
        cls,
        planes: tuple[np.ndarray, np.ndarray, np.ndarray],
        *,
        fmt: FrameFormat,
        bit_depth: int,
        source: YuvName | None = None,
    ) -> Frame:
        """Normalise integer samples to [0, 1] float32."""
        peak = float(max_sample_value(bit_depth))
        normalised = tuple((plane.astype(np.float32) / np.float32(peak)) for plane in planes)
        return cls(planes=normalised, format=fmt, bit_depth=bit_depth, source=source)  # type: ignore[arg-type]

    def to_samples(self) -> FrameSamples:
        """The frame as its raw integer samples: compact, and exact to rebuild elsewhere."""
        dtype = sample_dtype(self.bit_depth)
        data = b"".join(plane.astype(dtype).tobytes() for plane in self.integer_planes())
        return FrameSamples(
            data=data,
            format=self.format,
            bit_depth=self.bit_depth,
            width=self.width,
            height=self.height,
            source=self.source,
        )


@dataclass(frozen=True)
class FrameSamples:
    """A frame as planar integer samples (bytes, or little-endian 16-bit words above 8 bits).

    This is what crosses machines when a job runs on a remote worker: the first frame's
    samples, four times smaller than float32 planes for 8-bit input, and
    :meth:`to_frame` gives back exactly the frame that :meth:`Frame.to_samples` came from.
    """

    data: bytes
    format: FrameFormat
    bit_depth: int
    width: int
    height: int
    source: YuvName | None = None

    def to_frame(self) -> Frame:
        """The frame these samples describe.

        Raises:
            ValueError: the byte count does not match the size, format and bit depth.
        """
        shapes = plane_shapes(self.format, self.width, self.height)
        dtype = sample_dtype(self.bit_depth)
        expected = sum(rows * cols for rows, cols in shapes) * dtype.itemsize
        if len(self.data) != expected:
            raise ValueError(
                f"{self.width}x{self.height} {self.format} {self.bit_depth}-bit samples: "
                f"expected {expected} bytes, found {len(self.data)}"
            )
        samples = np.frombuffer(self.data, dtype=dtype)
        planes = []
        offset = 0
        for rows, cols in shapes:
            planes.append(samples[offset : offset + rows * cols].reshape(rows, cols))
            offset += rows * cols
        return Frame.from_integer_planes(
            (planes[0], planes[1], planes[2]),
            fmt=self.format,
            bit_depth=self.bit_depth,
            source=self.source,
        )
