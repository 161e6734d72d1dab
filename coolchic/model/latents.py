"""Hierarchical latent grids.

Grid i (i = 0 … n_grids − 1) has one channel and ``ceil(H / 2^i) x ceil(W / 2^i)`` values:
grid 0 is at full resolution, each next grid halves both sides (ceil, so a 1x1 grid stays 1x1).
All grids start at zero; the random ARM and synthesis weights break the symmetry. Hyper-latent
grids (Cool-chic 5), when there are any, come after them: coded like the others, read only by
the ARM's inter-feature context, never upsampled.

The value that is quantised is ``gain * y`` with a fixed gain (16 from Cool-chic v3.0 on). The
gain is not transmitted: the decoder only sees the integers ``round(gain * y)``; it acts as a
learning-rate multiplier on the latents.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from coolchic.model.layout import coded_grid_shapes, grid_shapes

__all__ = ["LatentGrids", "grid_shapes", "n_latents"]


def n_latents(height: int, width: int, n_grids: int) -> int:
    """Total number of latent values over all grids (≈ 1.333 · H · W for 7 grids)."""
    return sum(h * w for h, w in grid_shapes(height, width, n_grids))


class LatentGrids(nn.Module):
    """One zero-initialised ``nn.Parameter`` of shape ``[1, 1, h_i, w_i]`` per grid.

    Args:
        height: image height H (luma / RGB), >= 1.
        width: image width W, >= 1.
        n_grids: number of latent grids (the synthesis input).
        gain: fixed positive gain g; :meth:`scaled_flat` returns ``g * y``.
        n_hyper: hyper-latent grids after them (:func:`coded_grid_shapes`).
    """

    def __init__(
        self, height: int, width: int, n_grids: int, *, gain: float, n_hyper: int = 0
    ) -> None:
        super().__init__()
        self.n_grids = n_grids
        self.shapes: tuple[tuple[int, int], ...] = tuple(
            coded_grid_shapes(height, width, n_grids, n_hyper)
        )
        self.gain = float(gain)
        self.grids = nn.ParameterList(nn.Parameter(torch.zeros(1, 1, h, w)) for h, w in self.shapes)
        self.sizes: tuple[int, ...] = tuple(h * w for h, w in self.shapes)

    @property
    def n_latents(self) -> int:
        """Total number of latent values (sum of the grid sizes)."""
        return sum(self.sizes)

    def scaled_flat(self) -> Tensor:
        """``gain * y`` of all grids, flattened in raster order and concatenated finest first.

        Returns:
            float32 tensor of shape ``[n_latents]``, differentiable w.r.t. the grids.
        """
        return torch.cat([grid.reshape(-1) for grid in self.grids]) * self.gain

    @torch.no_grad()
    def set_quantized(self, index: int, value: float) -> None:
        """Make latent ``index`` (of :meth:`scaled_flat`) quantise to the integer ``value``."""
        for grid, size in zip(self.grids, self.sizes, strict=True):
            if index < size:
                grid.view(-1)[index] = value / self.gain
                return
            index -= size
        raise IndexError(f"latent index beyond the {self.n_latents} latents")

    def split(self, flat: Tensor) -> list[Tensor]:
        """Views of a ``[n_latents]`` tensor as the grids ``[1, 1, h_i, w_i]``, finest first."""
        return [
            part.view(1, 1, h, w)
            for part, (h, w) in zip(torch.split(flat, self.sizes), self.shapes, strict=True)
        ]

    def check_latents(self, latents: list[Tensor]) -> None:
        """Raise ``ValueError`` unless ``latents`` has one ``[1, 1, h_i, w_i]`` tensor per grid."""
        if len(latents) != len(self.shapes):
            raise ValueError(f"latents: expected {len(self.shapes)} grids, found {len(latents)}")
        for index, (latent, (h, w)) in enumerate(zip(latents, self.shapes, strict=True)):
            if tuple(latent.shape) != (1, 1, h, w):
                raise ValueError(
                    f"latents[{index}]: expected shape (1, 1, {h}, {w}), "
                    f"found {tuple(latent.shape)}"
                )
