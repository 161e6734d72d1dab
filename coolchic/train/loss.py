"""What training minimises: distortion + λ · rate, with the planes weighted by pixel count.

Distortion is the MSE on [0, 1] data. For YUV 4:2:0 it is the pixel-count-weighted mean over
the planes, (4·MSE_Y + MSE_U + MSE_V)/6, where U and V are the 2x2 means of synthesis
channels 1 and 2; for RGB and 4:4:4 the plain mean over three full-resolution channels. Rate is
in bits per pixel, per H·W luma/RGB position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from coolchic.io.frame import Frame, FrameFormat
from coolchic.model.ordered import ordered_sum
from coolchic.model.output import round_to_bit_depth


@dataclass(frozen=True, eq=False)
class Target:
    """The image to overfit, as tensors.

    Attributes:
        full: ``[1, C, H, W]`` float32 in [0, 1]: Y for 4:2:0 (C = 1), all three planes else.
        chroma: ``[1, 2, H/2, W/2]`` U and V for 4:2:0, else None.
    """

    format: FrameFormat
    bit_depth: int
    full: Tensor
    chroma: Tensor | None

    @property
    def height(self) -> int:
        return int(self.full.shape[-2])

    @property
    def width(self) -> int:
        return int(self.full.shape[-1])

    @property
    def n_pixels(self) -> int:
        return self.height * self.width

    @classmethod
    def from_frame(cls, frame: Frame, device: str | torch.device = "cpu") -> Target:
        def tensor(planes: list[np.ndarray]) -> Tensor:
            stacked = np.stack(planes)[None].astype(np.float32)
            return torch.from_numpy(stacked).to(device)

        if frame.format == "yuv420":
            return cls(
                format=frame.format,
                bit_depth=frame.bit_depth,
                full=tensor([frame.planes[0]]),
                chroma=tensor([frame.planes[1], frame.planes[2]]),
            )
        return cls(
            format=frame.format,
            bit_depth=frame.bit_depth,
            full=tensor(list(frame.planes)),
            chroma=None,
        )


def split_output(x_hat: Tensor, fmt: FrameFormat) -> tuple[Tensor, Tensor | None]:
    """Synthesis output ``[1, 3, H, W]`` → (full-resolution part, 4:2:0 chroma or None)."""
    if fmt == "yuv420":
        return x_hat[:, :1], F.avg_pool2d(x_hat[:, 1:3], kernel_size=2)
    return x_hat, None


def distortion(x_hat: Tensor, target: Target) -> Tensor:
    """Pixel-count-weighted MSE (a 0-d tensor) between the synthesis output and the target."""
    full, chroma = split_output(x_hat, target.format)
    sse = ordered_sum((full - target.full) ** 2)  # the same at any thread count
    n_samples = target.full.numel()
    if chroma is not None and target.chroma is not None:
        sse = sse + ordered_sum((chroma - target.chroma) ** 2)
        n_samples += target.chroma.numel()
    return sse / n_samples


def decoded_output(x_hat: Tensor, target_format: FrameFormat, bit_depth: int) -> Tensor:
    """What the decoder writes, back in a training-shaped tensor.

    4:2:0 conversion (chroma means), clamp to [0, 1], rounding to the bit depth, then chroma
    repeated ×2 so the result has the shape of ``x_hat`` and :func:`distortion` applies.
    """
    full, chroma = split_output(x_hat, target_format)
    full = round_to_bit_depth(full.clamp(0.0, 1.0), bit_depth)
    if chroma is None:
        return full
    chroma = round_to_bit_depth(chroma.clamp(0.0, 1.0), bit_depth)
    return torch.cat([full, F.interpolate(chroma, scale_factor=2.0, mode="nearest")], dim=1)


def psnr_db(mse: float) -> float:
    return math.inf if mse <= 0 else -10.0 * math.log10(mse)
