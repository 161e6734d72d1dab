"""Decoder complexity in multiply-accumulates per pixel, and parameter counts.

Counted as Cool-chic counts them: one MAC per weight use (biases, residual additions,
non-linearities and padding are free), over *all* latents, divided by the number of image
pixels H·W. Exact for the grid sizes of the given image:

* ARM: ``Σ_layers in · out`` per latent (plus ``2C`` with the stabiliser), every latent of
  every coded grid (≈ 1.333 latents per pixel, hyper-latents included); with an
  inter-feature context, ``n_in · C_f`` per position of the next coarser resolution of each
  of its grids;
* upsampling, as :func:`coolchic.model.upsampling.upsample2x` runs it: per level and per map
  of the stack, a horizontal pass producing ``h x 2w`` samples (``h x w`` = the coarser grid)
  that are cropped to the finer grid's width ``w_f``, then a vertical pass producing
  ``2h x w_f`` samples cropped to ``h_f``; K/2 MACs per produced sample (the polyphase matmul
  also evaluates one discarded position per row and phase when K ≡ 0 mod 4, not counted);
  plus the pre-concatenation filter on the finer grid, two passes of K_p MACs per sample;
* synthesis: ``Σ_layers in · out · k²`` per pixel, plus ``n_grids · 3`` with the stabiliser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

from coolchic.model.config import ModelConfig
from coolchic.model.layout import coded_grid_shapes, grid_shapes, ifce_inputs

__all__ = ["MacBreakdown", "ParameterCounts", "mac_per_pixel", "parameter_counts"]


@dataclass(frozen=True)
class MacBreakdown:
    """MAC per decoded pixel (per H·W position) of each decoder module; ``total`` is their sum."""

    arm: float
    upsampling: float
    synthesis: float
    total: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "total", self.arm + self.upsampling + self.synthesis)


@dataclass(frozen=True)
class ParameterCounts:
    """Number of trainable values per module (the latents depend on the image size)."""

    latents: int
    arm: int
    upsampling: int
    synthesis: int

    @property
    def networks(self) -> int:
        """ARM + upsampling + synthesis (what is quantised and sent as network parameters)."""
        return self.arm + self.upsampling + self.synthesis


def _arm_layers(config: ModelConfig) -> list[tuple[int, int]]:
    widths = [config.n_contexts, *config.arm_hidden, 2]
    return list(pairwise(widths))


def _synthesis_layers(config: ModelConfig) -> list[tuple[int, int, int]]:
    layers: list[tuple[int, int, int]] = []
    width = config.n_grids
    for spec in config.synthesis:
        layers.append((width, spec.out_channels, spec.kernel))
        width = spec.out_channels
    return layers


def _arm_stabiliser_weights(config: ModelConfig) -> int:
    """The ARM stabiliser's ``C → 2`` weights (no bias), one multiply-add each per latent."""
    return 2 * config.n_contexts if config.arm_stabiliser else 0


def _stabiliser_weights(config: ModelConfig) -> int:
    """The synthesis stabiliser's 1x1 weights (no bias), one multiply-add each per pixel."""
    return config.n_grids * config.out_channels if config.synthesis_stabiliser else 0


def _ifce_maps(config: ModelConfig, height: int, width: int) -> list[tuple[int, int]]:
    """(inputs, positions) of each IFCE linear map: the coarser grids it reads, and the
    positions at the next coarser resolution where it runs."""
    if not config.ifce_features:
        return []
    shapes = grid_shapes(height, width, config.n_grids)
    return [
        (n_in, -(-shapes[g][0] // 2) * -(-shapes[g][1] // 2))
        for g, n_in in enumerate(ifce_inputs(config.n_grids, config.hyper_grids))
    ]


def mac_per_pixel(config: ModelConfig, height: int, width: int) -> MacBreakdown:
    """MAC per pixel of decoding a ``height`` x ``width`` image with ``config``.

    Raises:
        ValueError: a non-positive image size.
    """
    shapes = grid_shapes(height, width, config.n_grids)
    n_pixels = float(height * width)
    coded = coded_grid_shapes(height, width, config.n_grids, config.hyper_grids)
    n_latents = sum(h * w for h, w in coded)

    arm = n_latents * (
        sum(n_in * n_out for n_in, n_out in _arm_layers(config)) + _arm_stabiliser_weights(config)
    )
    arm += sum(
        n_in * config.ifce_features * positions
        for n_in, positions in _ifce_maps(config, height, width)
    )

    taps = config.upsampling_kernel // 2
    upsampling = 0
    for level in range(config.n_grids - 1):
        coarse_h, coarse_w = shapes[level + 1]
        n_maps = config.n_grids - 1 - level
        fine_h, fine_w = shapes[level]
        horizontal = coarse_h * 2 * coarse_w
        vertical = 2 * coarse_h * fine_w
        upsampling += n_maps * taps * (horizontal + vertical)
        upsampling += 2 * config.preconcat_kernel * fine_h * fine_w

    synthesis = (
        height
        * width
        * (
            sum(n_in * n_out * k * k for n_in, n_out, k in _synthesis_layers(config))
            + _stabiliser_weights(config)
        )
    )
    return MacBreakdown(
        arm=arm / n_pixels, upsampling=upsampling / n_pixels, synthesis=synthesis / n_pixels
    )


def parameter_counts(config: ModelConfig, height: int, width: int) -> ParameterCounts:
    """Number of trainable values of each module of a model for a ``height`` x ``width`` image."""
    n_levels = config.n_grids - 1
    preconcat = (config.preconcat_kernel + 1) // 2 if config.preconcat_kernel else 0
    return ParameterCounts(
        latents=sum(
            h * w for h, w in coded_grid_shapes(height, width, config.n_grids, config.hyper_grids)
        ),
        arm=sum(n_in * n_out + n_out for n_in, n_out in _arm_layers(config))
        + _arm_stabiliser_weights(config)
        + sum((n_in + 1) * config.ifce_features for n_in, _ in _ifce_maps(config, height, width)),
        upsampling=n_levels * (config.upsampling_kernel // 2 + preconcat),
        synthesis=sum(n_in * n_out * k * k + n_out for n_in, n_out, k in _synthesis_layers(config))
        + _stabiliser_weights(config),
    )
