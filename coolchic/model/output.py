"""Conversion of the synthesis output to the decoded image.

The synthesis always produces ``[1, 3, H, W]`` at full resolution. For RGB the three channels
are clamped to [0, 1]; for YUV 4:2:0 channel 0 is Y and channels 1, 2 are averaged over 2x2
blocks into U and V (Cool-chic v5), each plane then clamped. Pure functions: inputs are never
modified.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["round_to_bit_depth", "to_rgb", "to_yuv420"]


def _check_image(x: Tensor, channels: int) -> None:
    if x.dim() != 4 or x.shape[0] != 1 or x.shape[1] != channels:
        raise ValueError(f"x: expected shape [1, {channels}, H, W], found {tuple(x.shape)}")


def to_rgb(x: Tensor) -> Tensor:
    """Clamp ``[1, 3, H, W]`` to [0, 1] (same shape and dtype)."""
    _check_image(x, 3)
    return x.clamp(0.0, 1.0)


def to_yuv420(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Split a full-resolution ``[1, 3, H, W]`` output into clamped 4:2:0 planes.

    Args:
        x: float tensor ``[1, 3, H, W]`` with H and W even; channels Y, U, V in [0, 1].

    Returns:
        ``(y, u, v)``: ``[1, 1, H, W]``, ``[1, 1, H/2, W/2]``, ``[1, 1, H/2, W/2]``, clamped to
        [0, 1]; chroma is the mean of each 2x2 block (taken before clamping).

    Raises:
        ValueError: wrong shape or odd height/width.
    """
    _check_image(x, 3)
    height, width = x.shape[-2:]
    if height % 2 or width % 2:
        raise ValueError(f"x: expected even height and width for 4:2:0, found {height}x{width}")
    y = x[:, :1].clamp(0.0, 1.0)
    chroma = F.avg_pool2d(x[:, 1:], kernel_size=2).clamp(0.0, 1.0)
    return y, chroma[:, :1], chroma[:, 1:]


def round_to_bit_depth(x: Tensor, bit_depth: int) -> Tensor:
    """``round((2^bd − 1)·x) / (2^bd − 1)``: the values a file of that bit depth stores.

    Args:
        x: float tensor in [0, 1], any shape.
        bit_depth: 1 … 16.
    """
    if not 1 <= bit_depth <= 16:
        raise ValueError(f"bit_depth: expected an integer in 1..16, found {bit_depth}")
    peak = float((1 << bit_depth) - 1)
    return (x * peak).round() / peak
