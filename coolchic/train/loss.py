"""What training minimises: distortion + λ · rate, with the planes weighted by pixel count.

The rate is the latents' estimated bits; at low rates the networks' coded size, which the stream
carries too, adds its slope to their gradients (:func:`add_network_rate_gradient`).

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
from coolchic.model.coolchic import CoolChicModel
from coolchic.model.layout import upsampling_initial_values
from coolchic.model.ordered import ordered_sum
from coolchic.model.output import round_to_bit_depth
from coolchic.nnquant.params import parameter_layout

#: How many times its slope the networks' coded size weighs in training, from
#: :data:`NETWORK_RATE_MIN_LMBDA` up. The slope holds for a fixed step only. At 2, on seven
#: 192x128 to 416x240 pictures at λ = 4e-3 and 1e-2, the networks' bits fell by 5 to 52 %
#: and the rate-distortion cost by 1.95 ± 0.55 % (22 pairs over two seeds, 18 lower); at
#: λ = 1e-3 it rose by 0.4 % in each of four pairs (BENCHMARKS.md, 2026-12-07 08:30). Over
#: four seeds it lowered J at λ = 4e-3 and 1e-2 on kodim15 192x128 by 2.9 ± 0.9 %, and
#: ``medium``'s larger networks gained more: 6 to 14 % there (2026-12-07 10:45).
NETWORK_RATE_WEIGHT = 2.0
#: Below this λ (high rates) the networks train as if they were free: there they are a smaller
#: share of the file and their precision buys more distortion than their bits cost. Between
#: the measured 1e-3 (worse) and 4e-3 (better).
NETWORK_RATE_MIN_LMBDA = 2e-3
#: The smallest spread assumed for the upsampling filters: they start at their known values,
#: where the differences that the stream codes are all zero.
MIN_UPSAMPLING_SPREAD = 1e-2
#: The same for the other groups, only to keep the slope finite.
MIN_SPREAD = 1e-6


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
    """Synthesis output ``[1, 3, H, W]`` → (full-resolution part, 4:2:0 chroma or None).

    One split rather than two slices: the backward joins the two gradients in one pass, where
    each slice's backward filled a zeroed copy of the whole output and autograd added the two.
    """
    if fmt == "yuv420":
        luma, chroma = x_hat.split((1, 2), dim=1)
        return luma, F.avg_pool2d(chroma, kernel_size=2)
    return x_hat, None


def distortion(x_hat: Tensor, target: Target) -> Tensor:
    """Pixel-count-weighted MSE (a 0-d tensor) between the synthesis output and the target."""
    return _planes_distortion(*split_output(x_hat, target.format), target)


def decoded_distortion(x_hat: Tensor, target: Target) -> Tensor:
    """:func:`distortion` of what the decoder writes from ``x_hat`` (:func:`decoded_planes`)."""
    return _planes_distortion(*decoded_planes(x_hat, target.format, target.bit_depth), target)


def _planes_distortion(full: Tensor, chroma: Tensor | None, target: Target) -> Tensor:
    sse = ordered_sum((full - target.full) ** 2)  # the same at any thread count
    n_samples = target.full.numel()
    if chroma is not None and target.chroma is not None:
        sse = sse + ordered_sum((chroma - target.chroma) ** 2)
        n_samples += target.chroma.numel()
    return sse / n_samples


def decoded_planes(
    x_hat: Tensor, target_format: FrameFormat, bit_depth: int
) -> tuple[Tensor, Tensor | None]:
    """What the decoder writes: the full-resolution part and the 4:2:0 chroma (or None).

    4:2:0 conversion (chroma means), then clamp to [0, 1] and rounding to the bit depth.
    """
    full, chroma = split_output(x_hat, target_format)
    full = round_to_bit_depth(full.clamp(0.0, 1.0), bit_depth)
    if chroma is not None:
        chroma = round_to_bit_depth(chroma.clamp(0.0, 1.0), bit_depth)
    return full, chroma


def psnr_db(mse: float) -> float:
    return math.inf if mse <= 0 else -10.0 * math.log10(mse)


def network_rate_weight(lmbda: float) -> float:
    """How many times its slope the networks' coded size weighs at ``lmbda``."""
    return NETWORK_RATE_WEIGHT if lmbda >= NETWORK_RATE_MIN_LMBDA else 0.0


@torch.no_grad()
def add_network_rate_gradient(model: CoolChicModel, bits_weight: float) -> None:
    """Add ``bits_weight`` times the slope of the networks' coded size to their gradients.

    Each parameter group of the stream (:func:`~coolchic.nnquant.params.parameter_layout`)
    has one step ``s`` and a code fitted to its spread: about ``n · log2(mean |θ| / s)`` bits
    plus a constant, as for a Laplace source. At a fixed step, one parameter's share grows by
    ``1 / (ln 2 · mean |θ|)`` bits per unit of ``|θ|``, and that slope, with its sign, is what
    is added, so that the networks learn that smaller parameters are cheaper, as the latents
    do from their rate. The upsampling filters are coded as their difference from the start,
    and their slope is taken there. Written as the gradient itself rather than a loss term:
    a few fused operations instead of an autograd graph of small ones (0.3 against 3 ms a
    step on a 192x128 image, where a step takes about 30 ms).

    Args:
        model: its network parameters get the slope where they have a gradient.
        bits_weight: what one bit costs in the loss, times :func:`network_rate_weight`:
            ``network_rate_weight(λ) · λ / (H·W)``.
    """
    config = model.config
    start = upsampling_initial_values(
        config.n_grids, config.upsampling_kernel, config.preconcat_kernel
    )
    for (module, _), layout in parameter_layout(config).items():
        parent = model.module(module)
        named = [(name, parent.get_parameter(name)) for name, _ in layout]
        named = [(name, p) for name, p in named if p.grad is not None]
        if not named:
            continue
        parameters = [p for _, p in named]
        coded, floor = parameters, MIN_SPREAD
        if module == "upsampling":
            starts = [torch.from_numpy(start[name]).to(p) for name, p in named]
            coded = torch._foreach_sub(parameters, starts)
            floor = MIN_UPSAMPLING_SPREAD
        size = sum(p.numel() for p in coded)
        spread = torch.stack(torch._foreach_norm(coded, 1)).sum().div_(size).clamp_min_(floor)
        slopes = torch._foreach_sign(coded)
        torch._foreach_mul_(slopes, bits_weight / math.log(2) / spread)
        torch._foreach_add_([p.grad for p in parameters], slopes)
