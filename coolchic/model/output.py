"""The decoded image's sample grid: values rounded to what a file of that bit depth stores.

The 4:2:0 conversion of the synthesis output lives where it is used: in
:func:`coolchic.train.loss.split_output` for training (torch, differentiable) and in the
decoder's numpy output stage, which sums the 2x2 blocks in ``avg_pool2d``'s order.
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["round_to_bit_depth"]


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
