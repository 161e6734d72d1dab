"""The Cool-chic model of one image: latent grids, ARM, upsampling and synthesis.

Training forward pass (everything batched, no loop over pixels)::

    y      = gain · [grid 0, …, grid n−1]            flattened, [N_total]
    ŷ      = quantize(y)                               proxy of round, [N_total]
    μ, b   = ARM(gather(ŷ))                            one index for all grids, chunked
    bits   = −log2 P_Laplace(ŷ; μ, b)                  [N_total]
    x̂      = synthesis(upsampling(split(ŷ)))          [1, out_channels, H, W]

:meth:`CoolChicModel.decode_from_latents` (upsampling + synthesis of integer latents) is what
the decoder computes; the decoder itself (:mod:`coolchic.decoder`) runs the same passes in numpy
without torch, on the layout of :mod:`coolchic.model.layout`, and the ARM in fixed point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import assert_never

import torch
from torch import Tensor, nn

from coolchic.model.arm import Arm, ContextGather, InterFeatureContext
from coolchic.model.config import ModelConfig
from coolchic.model.fused import as_compiled_input
from coolchic.model.latents import LatentGrids
from coolchic.model.layout import MODULE_NAMES, ModuleName
from coolchic.model.ordered import ordered_sum
from coolchic.model.quantizer import INFERENCE, QuantizerSettings
from coolchic.model.synthesis import Synthesis
from coolchic.model.upsampling import Upsampling

__all__ = ["MODULE_NAMES", "CoolChicModel", "ModelOutput", "ModuleName"]


@dataclass(frozen=True)
class ModelOutput:
    """Result of a forward pass.

    Attributes:
        x_hat: float tensor ``[1, out_channels, H, W]``, unclamped (data range [0, 1]).
        rate_bits: 0-d float tensor, total latent rate in bits (differentiable).
        grid_rate_bits: ``[n_grids]`` bits per grid (detached), when requested, else None.
    """

    x_hat: Tensor
    rate_bits: Tensor
    grid_rate_bits: Tensor | None = None


class CoolChicModel(nn.Module):
    """Overfitted decoder of one ``height`` x ``width`` image.

    Args:
        config: the architecture.
        height: image height H (luma / RGB), >= 1.
        width: image width W, >= 1.

    Submodules (each trainable on its own, see :meth:`param_groups`):
        latents: :class:`LatentGrids`, ``n_grids`` parameters ``[1, 1, h_i, w_i]``.
        arm: :class:`Arm`.
        upsampling: :class:`Upsampling`.
        synthesis: :class:`Synthesis`.
    """

    def __init__(self, config: ModelConfig, height: int, width: int) -> None:
        super().__init__()
        self.config = config
        self.height = height
        self.width = width
        self.latents = LatentGrids(
            height, width, config.n_grids, gain=config.latent_gain, n_hyper=config.hyper_grids
        )
        self.context_gather = ContextGather(
            self.latents.shapes, config.n_ctx_rowcol, config.n_context_planes
        )
        self.arm = Arm(
            config.n_contexts,
            config.arm_hidden,
            stabiliser=config.arm_stabiliser,
            ifce=InterFeatureContext.for_config(config) if config.ifce_features else None,
        )
        self.upsampling = Upsampling(
            config.n_grids,
            kernel=config.upsampling_kernel,
            preconcat_kernel=config.preconcat_kernel,
        )
        self.synthesis = Synthesis(
            config.n_grids, config.synthesis, stabiliser=config.synthesis_stabiliser
        )
        grid_id = torch.repeat_interleave(
            torch.arange(config.n_coded_grids), torch.tensor(self.latents.sizes)
        )
        self.register_buffer("grid_id", grid_id, persistent=False)

    @property
    def grid_shapes(self) -> tuple[tuple[int, int], ...]:
        """``(h_i, w_i)`` of each grid, finest first."""
        return self.latents.shapes

    @property
    def n_latents(self) -> int:
        """Total number of latent values."""
        return self.latents.n_latents

    def module(self, name: ModuleName) -> nn.Module:
        """The submodule called ``name``."""
        match name:
            case "latents":
                return self.latents
            case "arm":
                return self.arm
            case "upsampling":
                return self.upsampling
            case "synthesis":
                return self.synthesis
            case _:
                assert_never(name)

    def param_groups(self) -> dict[ModuleName, list[nn.Parameter]]:
        """Trainable parameters by module, in :data:`MODULE_NAMES` order."""
        return {name: list(self.module(name).parameters()) for name in MODULE_NAMES}

    def forward(
        self,
        *,
        quantizer: QuantizerSettings = INFERENCE,
        generator: torch.Generator | None = None,
        with_grid_rate: bool = False,
    ) -> ModelOutput:
        """Reconstruction and latent rate with a training-time quantisation proxy.

        Args:
            quantizer: the proxy (default: true rounding, no gradient to the latents).
            generator: optional random generator for the quantisation noise.
            with_grid_rate: also return the (detached) rate of each grid.

        Returns:
            :class:`ModelOutput`.
        """
        y_hat = quantizer.apply(self.latents.scaled_flat(), generator=generator)
        y_hat = as_compiled_input(y_hat)  # the networks-only phase: the main phase's kernels
        bits = self._rate_bits(y_hat)
        grid_rate = self._grid_rate(bits) if with_grid_rate else None
        x_hat = self.synthesis(self.upsampling(self.latents.split(y_hat)[: self.config.n_grids]))
        return ModelOutput(x_hat=x_hat, rate_bits=ordered_sum(bits), grid_rate_bits=grid_rate)

    def _rate_bits(self, y_hat: Tensor) -> Tensor:
        """Bits of every latent, ``[N_total]``, from the flat (quantised) latents."""
        return self.arm.rate_of(y_hat, self.context_gather)

    @torch.no_grad()
    def latent_bits(self) -> Tensor:
        """Bits of every quantised latent under the float ARM, ``[n_latents]``, in the order
        of :meth:`~coolchic.model.latents.CoolChicLatents.scaled_flat`."""
        return self._rate_bits(torch.round(self.latents.scaled_flat()))

    def _grid_rate(self, bits: Tensor) -> Tensor:
        summed = torch.zeros(self.config.n_coded_grids, dtype=bits.dtype, device=bits.device)
        return summed.index_add_(0, self.grid_id, bits.detach())

    @torch.no_grad()
    def quantized_latents(self) -> list[Tensor]:
        """The integers the bitstream carries, ``round(gain · y)``.

        Returns:
            ``n_grids`` float32 tensors ``[1, 1, h_i, w_i]`` with integer values, finest first.
        """
        return [t.clone() for t in self.latents.split(torch.round(self.latents.scaled_flat()))]

    def decode_from_latents(self, latents: list[Tensor], *, separable: bool = True) -> Tensor:
        """Upsampling + synthesis of given latents (what the decoder computes, in torch).

        Args:
            latents: ``n_grids`` tensors ``[1, 1, h_i, w_i]`` (any numeric dtype, integer values),
                finest first.
            separable: run the upsampling as 1-D passes (as the decoder does).

        Returns:
            float32 tensor ``[1, out_channels, H, W]``, unclamped.

        Raises:
            ValueError: wrong number of grids or a grid of the wrong shape.
        """
        self.latents.check_latents(latents)
        dtype = self.latents.grids[0].dtype
        grids = [latent.to(dtype) for latent in latents[: self.config.n_grids]]
        return self.synthesis(self.upsampling(grids, separable=separable))

    def rate_of_latents(self, latents: list[Tensor]) -> Tensor:
        """Float-ARM estimate of the total bits of given latents, a 0-d tensor (what the
        networks' step search prices the ARM's candidates with).

        Args:
            latents: ``n_grids`` tensors ``[1, 1, h_i, w_i]``, finest first.
        """
        self.latents.check_latents(latents)
        dtype = self.latents.grids[0].dtype
        flat = torch.cat([latent.reshape(-1).to(dtype) for latent in latents])
        return ordered_sum(self._rate_bits(flat))
