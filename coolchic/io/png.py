"""PNG images: 8-bit RGB in, 8-bit RGB out.

Grayscale and palette images are converted to RGB; an alpha channel is accepted only when it is
fully opaque (anything else would be silently lost); 16-bit PNGs are refused, since Pillow would
narrow them to 8 bits without a word.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from coolchic.errors import InputError
from coolchic.io.files import atomic_write_bytes, regular_file_size
from coolchic.io.frame import Frame
from coolchic.io.naming import MAX_DIMENSION

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IHDR_BIT_DEPTH_OFFSET = 24  # signature (8) + chunk length (4) + "IHDR" (4) + width + height
_CONVERTIBLE_MODES = {"RGB", "L", "P", "1", "RGBA", "LA", "PA"}


def is_png_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ".png"


def read_png(path: str | Path) -> Frame:
    """Read a PNG as an 8-bit RGB frame.

    Raises:
        InputError: not a PNG, unreadable, 16-bit, translucent, or an unsupported mode.
    """
    regular_file_size(path)
    try:
        with open(path, "rb") as handle:
            header = handle.read(_IHDR_BIT_DEPTH_OFFSET + 1)
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror or error})") from None
    if not header.startswith(PNG_SIGNATURE) or len(header) <= _IHDR_BIT_DEPTH_OFFSET:
        raise InputError(f"{path}: not a PNG file (bad signature)")
    bit_depth = header[_IHDR_BIT_DEPTH_OFFSET]
    if bit_depth > 8:
        raise InputError(f"{path}: {bit_depth}-bit PNG is not supported, expected 8-bit")
    try:
        with Image.open(path) as image:
            image.load()
            rgb = _to_rgb(image, path)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise InputError(f"{path}: cannot decode PNG ({error})") from None
    width, height = rgb.size
    if width > MAX_DIMENSION or height > MAX_DIMENSION:
        raise InputError(f"{path}: {width}x{height} exceeds the maximum of {MAX_DIMENSION}")
    samples = np.asarray(rgb, dtype=np.uint8)
    planes = (samples[:, :, 0], samples[:, :, 1], samples[:, :, 2])
    return Frame.from_integer_planes(planes, fmt="rgb", bit_depth=8)


def _to_rgb(image: Image.Image, path: str | Path) -> Image.Image:
    if image.mode not in _CONVERTIBLE_MODES:
        raise InputError(f"{path}: PNG mode {image.mode} is not supported, expected 8-bit RGB")
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"))
        if int(alpha.min()) < 255:
            raise InputError(
                f"{path}: the PNG has transparent pixels; coolchic codes RGB only and would "
                "lose the alpha channel (flatten the image first)"
            )
        return rgba.convert("RGB")
    return image.convert("RGB")


def png_bytes(frame: Frame) -> bytes:
    """Encode an RGB frame as 8-bit PNG bytes."""
    if frame.format != "rgb":
        raise ValueError(f"cannot write a {frame.format} frame as PNG")
    samples = np.stack([plane for plane in frame.integer_planes()], axis=-1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(samples).save(buffer, format="PNG")
    return buffer.getvalue()


def write_png(path: str | Path, frame: Frame) -> None:
    """Write an RGB frame as an 8-bit PNG, atomically."""
    atomic_write_bytes(path, png_bytes(frame))
