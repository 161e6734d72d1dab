"""What the torch model and the torch-free decoder must agree on, written once (numpy only).

The encoder trains a torch :class:`~coolchic.model.coolchic.CoolChicModel`; the decoder
(:mod:`coolchic.decoder`) rebuilds the same networks from the stream without torch. Everything
both ends derive from the architecture lives here, so that it cannot drift apart:

* the names of the model's parts (:data:`MODULE_NAMES`), which the trainer and the recipes
  also use without loading torch;
* the latent grid sizes (:func:`grid_shapes`);
* the ARM's causal context (:func:`context_offsets`); with P coarser contexts (format version
  3) it also holds, for a latent at ``(r, c)`` of grid g, the latent of grid ``g + p`` at
  ``(r >> p, c >> p)`` for p = 1 … P, 0 past the coarsest grid (the torch form is
  :func:`coolchic.model.arm.coarser_planes`, the decoder's
  :class:`coolchic.bitstream.latents._Schedule`);
* the polyphase form of the ×2 upsampling step (:func:`polyphase`) and the index maps from the
  free filter taps to the filters (:func:`phase_taps_index`, :func:`odd_full_index`);
* the fixed starting values of the upsampling filters (:func:`upsampling_initial_values`),
  from which the stream codes the trained filters as differences
  (:func:`coolchic.nnquant.params.predicted_integers`).

The network parameters as the stream carries them (their groups, names and shapes in coding
order) are :mod:`coolchic.nnquant.params`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = [
    "BICUBIC_HALF_KERNEL",
    "BILINEAR_HALF_KERNEL",
    "IFCE_GRIDS",
    "MODULE_NAMES",
    "ModuleName",
    "Polyphase",
    "coded_grid_shapes",
    "context_offsets",
    "grid_resolutions",
    "grid_shapes",
    "ifce_inputs",
    "ifce_sources",
    "initial_half_kernel",
    "odd_full_index",
    "phase_taps_index",
    "polyphase",
    "upsampling_initial_values",
]

ModuleName = Literal["latents", "arm", "upsampling", "synthesis"]
#: The parts of a model, in the order of its parameters.
MODULE_NAMES: tuple[ModuleName, ...] = ("latents", "arm", "upsampling", "synthesis")

#: First half of the 8-tap bicubic (a = −0.75) ×2 kernel, outermost tap first.
BICUBIC_HALF_KERNEL = (-0.03515625, -0.10546875, 0.26171875, 0.87890625)
#: First half of the 4-tap bilinear ×2 kernel.
BILINEAR_HALF_KERNEL = (0.25, 0.75)


def grid_shapes(height: int, width: int, n_grids: int) -> list[tuple[int, int]]:
    """Sizes ``(ceil(H / 2^i), ceil(W / 2^i))`` of the latent grids, finest (i = 0) first.

    Raises:
        ValueError: a non-positive height, width or grid count.
    """
    if height < 1 or width < 1:
        raise ValueError(f"image size: expected height, width >= 1, found {height}x{width}")
    if n_grids < 1:
        raise ValueError(f"n_grids: expected >= 1, found {n_grids}")
    return [(-(-height // (1 << i)), -(-width // (1 << i))) for i in range(n_grids)]


def grid_resolutions(n_grids: int, n_hyper: int = 0) -> list[int]:
    """The downsampling exponent of each coded grid: latents ``0 … n − 1``, then the hyper
    grids at the ``n_hyper`` coarsest of those resolutions."""
    return [*range(n_grids), *range(n_grids - n_hyper, n_grids)]


def coded_grid_shapes(
    height: int, width: int, n_grids: int, n_hyper: int = 0
) -> list[tuple[int, int]]:
    """Sizes of every coded grid: the latent grids (:func:`grid_shapes`), then the hyper ones."""
    shapes = grid_shapes(height, width, n_grids)
    return [shapes[r] for r in grid_resolutions(n_grids, n_hyper)]


#: The finest grids whose ARM context gets inter-feature (IFCE) values, as in Cool-chic 5.
IFCE_GRIDS = 3


def ifce_sources(n_grids: int, n_hyper: int) -> list[list[int]]:
    """For each of the :data:`IFCE_GRIDS` finest grids that has any, the coded grids its
    inter-feature context reads: every grid of a coarser resolution (latents and hyper), in
    coded order. Only the coarsest grids can have none, so entry g is grid g's."""
    resolutions = grid_resolutions(n_grids, n_hyper)
    sources = [
        [k for k, r in enumerate(resolutions) if r > resolutions[g]]
        for g in range(min(IFCE_GRIDS, n_grids))
    ]
    return [s for s in sources if s]


def ifce_inputs(n_grids: int, n_hyper: int) -> list[int]:
    """The input width of each inter-feature map (:func:`ifce_sources`)."""
    return [len(s) for s in ifce_sources(n_grids, n_hyper)]


def context_offsets(n_ctx_rowcol: int) -> tuple[tuple[int, int], ...]:
    """Causal context positions ``(dy, dx)`` in raster order of the window, top-left first.

    Args:
        n_ctx_rowcol: N >= 1.

    Returns:
        ``2N² + 2N`` offsets: rows ``dy = −N … −1`` with ``dx = −N … N``, then ``dy = 0`` with
        ``dx = −N … −1`` (24 for N = 3, 12 for N = 2).
    """
    if n_ctx_rowcol < 1:
        raise ValueError(f"n_ctx_rowcol: expected >= 1, found {n_ctx_rowcol}")
    n = n_ctx_rowcol
    above = [(dy, dx) for dy in range(-n, 0) for dx in range(-n, n + 1)]
    left = [(0, dx) for dx in range(-n, 0)]
    return tuple(above + left)


# --------------------------------------------------------------------------------------------
# Upsampling filters


@dataclass(frozen=True)
class Polyphase:
    """Polyphase form of the replicate-pad / stride-2 transposed conv / crop ×2 step, even K.

    With replicate padding K/2, transposed conv stride 2 and the crop ``K − 1 + K/2``, output
    ``2q + r`` receives ``x[q − e] · w[2e + r + K/2 − 1]`` for the K/2 values of e whose tap
    index lies in ``[0, K − 1]``. On the input replicate-padded by ``left`` (low side) and
    ``right`` (high side), output ``2q + r`` is therefore the correlation
    ``Σ_j padded[q + starts[r] + j] · w[taps[r][j]]``, ``j = 0 … K/2 − 1``.
    """

    kernel: int
    left: int
    right: int
    starts: tuple[int, int]
    taps: tuple[tuple[int, ...], tuple[int, ...]]

    @property
    def n_taps(self) -> int:
        """K/2, the multiplications per output sample of one 1-D pass."""
        return self.kernel // 2


@functools.cache
def polyphase(kernel: int) -> Polyphase:
    """The :class:`Polyphase` description of the ×2 step for even ``kernel`` ≥ 2."""
    if kernel < 2 or kernel % 2:
        raise ValueError(f"upsampling kernel: expected an even integer >= 2, found {kernel}")
    half = kernel // 2
    e_max: list[int] = []
    taps: list[tuple[int, ...]] = []
    for r in (0, 1):
        es = [e for e in range(-kernel, kernel + 1) if 0 <= 2 * e + r + half - 1 <= kernel - 1]
        # Correlation order: x[q - e_max] first (increasing input index).
        taps.append(tuple(2 * e + r + half - 1 for e in sorted(es, reverse=True)))
        e_max.append(max(es))
    left = max(e_max)
    starts = (left - e_max[0], left - e_max[1])
    right = max(start + half for start in starts) - 1 - left
    return Polyphase(kernel, left, right, starts, (taps[0], taps[1]))


def phase_taps_index(poly: Polyphase) -> np.ndarray:
    """``[K/2, 2]`` positions in the half-kernel of the taps of each phase (column r).

    The symmetric filter ``w`` of size K is its half-kernel followed by the mirror image, so
    tap t is half-kernel entry ``t`` or ``K − 1 − t``: ``half[..., index]`` gives the taps of
    both phases in correlation order.
    """
    kernel = poly.kernel
    columns = [[t if t < kernel // 2 else kernel - 1 - t for t in taps] for taps in poly.taps]
    return np.array(columns, dtype=np.int64).T.copy()


def odd_full_index(kernel: int) -> np.ndarray:
    """Positions in the half-kernel ``[(K+1)/2]`` (centre last) of the K taps of the full one."""
    centre = (kernel - 1) // 2
    return np.array([j if j <= centre else 2 * centre - j for j in range(kernel)], dtype=np.int64)


def initial_half_kernel(kernel: int) -> np.ndarray:
    """Initial free taps of the ×2 filter of even size K: bicubic (K ≥ 8) or bilinear (K = 4, 6).

    The half-kernel is zero-padded on its outer side (``[0, …, 0, *init]``).

    Returns:
        float32 array ``[K / 2]``, outermost tap first (the values are exact in float32).
    """
    if kernel < 4 or kernel % 2:
        raise ValueError(f"upsampling kernel: expected an even integer >= 4, found {kernel}")
    init = BICUBIC_HALF_KERNEL if kernel >= 8 else BILINEAR_HALF_KERNEL
    half = np.zeros(kernel // 2, dtype=np.float32)
    half[kernel // 2 - len(init) :] = init
    return half


def upsampling_initial_values(
    n_grids: int, kernel: int, preconcat_kernel: int
) -> dict[str, np.ndarray]:
    """The fixed starting value of each upsampling parameter, by name: bicubic and Dirac filters.

    Deterministic, so the decoder knows them too: the bitstream codes the trained filters as
    differences from these (smaller integers, fewer bits).

    Returns:
        ``transposed_half`` float32 ``[n_grids − 1, K/2]`` and, when ``preconcat_kernel`` is
        not 0, ``preconcat_half`` float32 ``[n_grids − 1, (K_p + 1)/2]`` (a centred delta).
    """
    n_levels = n_grids - 1
    values = {"transposed_half": np.tile(initial_half_kernel(kernel), (n_levels, 1))}
    if preconcat_kernel:
        dirac = np.zeros((n_levels, (preconcat_kernel + 1) // 2), dtype=np.float32)
        dirac[:, -1] = 1.0
        values["preconcat_half"] = dirac
    return values
