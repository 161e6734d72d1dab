"""Convolutional synthesis: upsampled latents → image.

A stack of ``k x k`` convolutions (stride 1, replicate padding ``(k − 1)/2``, bias), one per
:class:`~coolchic.model.config.LayerSpec`:

* ``linear``: ``y = conv(x)``, PyTorch's default init divided by ``C_out²``, bias 0;
* ``residual``: ``y = conv(x) + x`` (in == out channels), weight and bias initialised to 0;

then the non-linearity (``relu`` or ``none``), after the residual addition.

With a stabiliser (Cool-chic 5), a 1x1 linear map of the input, initialised to 0 and without
bias, is added to the last layer's output: a linear path from the latents to the image that
trains quickly while the non-linear stack catches up.
"""

from __future__ import annotations

from typing import assert_never

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from coolchic.model.config import LayerSpec
from coolchic.model.pointwise import pointwise_mlp

__all__ = ["Synthesis"]


def _conv(x: Tensor, weight: Tensor, bias: Tensor, kernel: int) -> Tensor:
    """``k x k`` conv with replicate padding; 1x1 on a single image is one ``addmm``.

    (On CPU, mkldnn's 1x1 convolution and especially its backward are several times slower
    than the equivalent matrix product.) The result may be channels-last.
    """
    batch, channels, height, width = x.shape
    if kernel == 1 and batch == 1:
        out = torch.addmm(bias[:, None], weight.flatten(1), x.reshape(channels, height * width))
        return out.view(1, -1, height, width)
    pad = (kernel - 1) // 2
    if pad:
        x = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    # mkldnn runs few-channel convolutions (and their backward) faster in channels-last.
    return F.conv2d(x.contiguous(memory_format=torch.channels_last), weight, bias)


class Synthesis(nn.Module):
    """Conv stack mapping ``[1, in_channels, H, W]`` features to ``[1, C_out, H, W]``.

    Args:
        in_channels: number of input feature maps (the number of latent grids).
        layers: the layer specs, first to last; residual layers need in == out channels.

    Raises:
        ValueError: a residual layer whose input and output widths differ.
    """

    def __init__(
        self, in_channels: int, layers: tuple[LayerSpec, ...], stabiliser: bool = False
    ) -> None:
        super().__init__()
        if not layers:
            raise ValueError("synthesis: expected at least one layer, found none")
        self.in_channels = in_channels
        self.specs: tuple[LayerSpec, ...] = tuple(layers)
        self.layers = nn.ModuleList()
        width = in_channels
        for index, spec in enumerate(self.specs):
            # Padding is applied in forward (replicate); the module only holds the weights.
            conv = nn.Conv2d(width, spec.out_channels, spec.kernel, bias=True)
            with torch.no_grad():
                match spec.kind:
                    case "linear":
                        conv.weight.div_(spec.out_channels**2)
                    case "residual":
                        if spec.out_channels != width:
                            raise ValueError(
                                f"synthesis layer {index} ({spec.format()}): expected a residual "
                                f"layer with out_channels == in_channels == {width}, "
                                f"found {spec.out_channels}"
                            )
                        conv.weight.zero_()
                    case _:
                        assert_never(spec.kind)
                conv.bias.zero_()
            self.layers.append(conv)
            width = spec.out_channels
        self.out_channels = width
        self.stabiliser: nn.Conv2d | None = None
        if stabiliser:
            self.stabiliser = nn.Conv2d(in_channels, width, 1, bias=False)
            with torch.no_grad():
                self.stabiliser.weight.zero_()

    def forward(self, x: Tensor) -> Tensor:
        """Apply the layers.

        Runs of consecutive 1x1 layers on a single image are one chunked
        :func:`~coolchic.model.pointwise.pointwise_mlp` (their wide hidden features never
        reach memory); ``k x k`` layers are convolutions.

        Args:
            x: float tensor ``[B, in_channels, H, W]`` (upsampled latents, latent units).

        Returns:
            float tensor ``[B, C_out, H, W]``, unclamped (image data is expected in [0, 1]).
        """
        source = x
        index = 0
        stabilised = False
        while index < len(self.specs):
            end = index
            while x.shape[0] == 1 and end < len(self.specs) and self.specs[end].kernel == 1:
                end += 1
            if end > index:
                # all layers 1x1: the stabiliser rides in the same pass, as the MLP's skip
                whole = index == 0 and end == len(self.specs)
                skip = self.stabiliser.weight.flatten(1) if whole and self.stabiliser else None
                x = self._pointwise_run(x, index, end, skip)
                stabilised = skip is not None
                index = end
            else:
                x = self._conv_layer(x, index)
                index += 1
        if self.stabiliser is not None and not stabilised:
            batch, channels, height, width = source.shape
            weight = self.stabiliser.weight.flatten(1)
            linear = torch.matmul(weight, source.reshape(batch, channels, height * width))
            x = x + linear.view(batch, -1, height, width)
        return x

    def _pointwise_run(self, x: Tensor, start: int, end: int, skip: Tensor | None = None) -> Tensor:
        """Layers ``start … end − 1`` (all 1x1) on a ``[1, C, H, W]`` input, plus ``skip · x``."""
        weights: list[Tensor] = []
        biases: list[Tensor] = []
        relus: list[bool] = []
        for spec, conv in zip(self.specs[start:end], self.layers[start:end], strict=True):
            weight = conv.weight.flatten(1)
            if spec.kind == "residual":
                eye = torch.eye(weight.shape[0], dtype=weight.dtype, device=weight.device)
                weight = weight + eye
            weights.append(weight)
            biases.append(conv.bias)
            relus.append(spec.nonlinearity == "relu")
        _, channels, height, width = x.shape
        out = pointwise_mlp(x.reshape(channels, height * width), weights, biases, relus, skip)
        return out.view(1, -1, height, width)

    def _conv_layer(self, x: Tensor, index: int) -> Tensor:
        spec, conv = self.specs[index], self.layers[index]
        # _conv returns a fresh tensor that its backward does not need: update it in place.
        y = _conv(x, conv.weight, conv.bias, spec.kernel)
        if spec.kind == "residual":
            y = y.add_(x)
        match spec.nonlinearity:
            case "relu":
                return torch.relu_(y)
            case "none":
                return y
            case _:
                assert_never(spec.nonlinearity)
