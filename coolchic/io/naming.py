"""The YUV file-name convention ``<name>_<W>x<H>_<fps>p_yuv<420|444>_<8|10>b.yuv``.

One anchored pattern on the basename, matched from the right (the ``name`` part is greedy, every
other field is anchored to the end), so names that contain underscores work. Each field is then
validated on its own so that an error says which field is wrong, what was expected and what was
found.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from coolchic.errors import InputError

ChromaFormat = Literal["yuv420", "yuv444"]

MAX_DIMENSION = 16384
SUPPORTED_BIT_DEPTHS = (8, 10)
SUPPORTED_CHROMA = ("420", "444")

EXPECTED_PATTERN = "<name>_<W>x<H>_<fps>p_yuv420_<8|10>b.yuv"

_NAME_PATTERN = re.compile(
    r"^(?P<name>.+)_(?P<width>[0-9]+)x(?P<height>[0-9]+)_(?P<fps>[0-9]+(?:\.[0-9]+)?)p"
    r"_yuv(?P<chroma>[0-9]+)_(?P<bits>[0-9]+)b\.yuv$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class YuvName:
    """The fields carried by a conforming YUV file name."""

    name: str
    width: int
    height: int
    fps_text: str
    chroma_format: ChromaFormat
    bit_depth: int

    def __post_init__(self) -> None:
        if not self.name:
            raise InputError("YUV name: the <name> part is empty")
        check_dimensions(self.width, self.height, self.chroma_format)
        if self.bit_depth not in SUPPORTED_BIT_DEPTHS:
            raise InputError(f"unsupported bit depth {self.bit_depth}: expected 8 or 10")
        try:
            fps = float(self.fps_text)
        except ValueError:
            raise InputError(f"frame rate {self.fps_text!r} is not a number") from None
        if not fps > 0:
            raise InputError(f"frame rate must be positive, found {self.fps_text}p")

    @property
    def fps(self) -> float:
        return float(self.fps_text)

    @property
    def filename(self) -> str:
        return format_yuv_name(
            self.name,
            width=self.width,
            height=self.height,
            fps_text=self.fps_text,
            chroma_format=self.chroma_format,
            bit_depth=self.bit_depth,
        )


def check_dimensions(width: int, height: int, chroma_format: ChromaFormat) -> None:
    """Reject zero, absurd (> 16384) and, for 4:2:0, odd dimensions."""
    for label, value in (("width", width), ("height", height)):
        if value <= 0:
            raise InputError(f"{label} must be positive, found {value}")
        if value > MAX_DIMENSION:
            raise InputError(f"{label} {value} is larger than the maximum {MAX_DIMENSION}")
        if chroma_format == "yuv420" and value % 2:
            raise InputError(
                f"{label} {value} is odd: YUV 4:2:0 needs even dimensions "
                "(chroma is subsampled by 2)"
            )


def parse_yuv_name(path: str | Path) -> YuvName:
    """Parse the fields of a YUV file name (only the basename is looked at).

    Raises:
        InputError: the name does not follow the convention, or a field is out of range.
    """
    basename = Path(path).name
    match = _NAME_PATTERN.match(basename)
    if match is None:
        raise InputError(
            f"file name {basename!r} does not follow the convention {EXPECTED_PATTERN} "
            "(for example kodim15_192x128_01p_yuv420_8b.yuv)"
        )
    chroma = match["chroma"]
    if chroma not in SUPPORTED_CHROMA:
        raise InputError(
            f"file name {basename!r}: chroma format yuv{chroma} is not supported, "
            "expected yuv420 (or yuv444)"
        )
    chroma_format: ChromaFormat = "yuv420" if chroma == "420" else "yuv444"
    return YuvName(
        name=match["name"],
        width=int(match["width"]),
        height=int(match["height"]),
        fps_text=match["fps"],
        chroma_format=chroma_format,
        bit_depth=int(match["bits"]),
    )


def name_from_stem(stem: str) -> tuple[str, str]:
    """The source name and frame rate carried by a stem such as a ``.cool`` file's.

    Streams do not store the source name (it would cost bytes in every file), and ``batch``
    names each stream after its input (``kodim15_192x128_01p_yuv420_8b.cool``): a stem that
    follows the convention gives its ``<name>`` part and its frame rate, any other stem is the
    name itself, with no frame rate (``""``).
    """
    try:
        fields = parse_yuv_name(stem + ".yuv")
    except InputError:
        return stem, ""
    return fields.name, fields.fps_text


def format_yuv_name(
    name: str,
    *,
    width: int,
    height: int,
    fps_text: str = "01",
    chroma_format: ChromaFormat = "yuv420",
    bit_depth: int = 8,
) -> str:
    """Build a file name that :func:`parse_yuv_name` reads back into the same fields."""
    return f"{name}_{width}x{height}_{fps_text}p_{chroma_format}_{bit_depth}b.yuv"


def is_yuv_path(path: str | Path) -> bool:
    """True if the path has a ``.yuv`` extension, in any case."""
    return Path(path).suffix.lower() == ".yuv"
