"""Auto-regressive probability model (ARM) of the latents.

Every latent ``ŷ`` is modelled as a discretised Laplace ``P(ŷ) = F(ŷ + ½) − F(ŷ − ½)`` whose
location ``μ`` and scale ``b`` come from a small MLP fed with already-decoded neighbours of the
same grid (the *context*). The context of Cool-chic v2 with ``n_ctx_rowcol = N`` is the causal
half of the ``(2N+1) x (2N+1)`` window centred on the latent, in raster order, top-left first:
the N full rows above (each 2N + 1 wide, centred) then the N positions on the left::

    N = 2:   x  x  x  x  x        12 context values
             x  x  x  x  x
             x  x  ŷ  .  .

Outside the grid the context is 0. In training all latents of all grids are modelled at once,
band by band, by :func:`coolchic.model.pointwise.context_mlp`; :func:`context_index` is the
same neighbourhood written as an index table (the reference the tests hold it to).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from coolchic.bitstream.constants import LATENT_MAX, LATENT_MIN, MAX_BITS_PER_LATENT
from coolchic.model.config import ModelConfig
from coolchic.model.fused import fusable
from coolchic.model.layout import context_offsets, grid_resolutions, ifce_sources
from coolchic.model.ordered import affine_columns
from coolchic.model.pointwise import (
    causal_contexts,
    context_geometry,
    context_mlp,
    pointwise_mlp,
)

__all__ = [
    "LOG_SCALE_MAX",
    "LOG_SCALE_MIN",
    "LOG_SCALE_OFFSET",
    "MAX_BITS_PER_SYMBOL",
    "Arm",
    "ContextGather",
    "coarser_planes",
    "context_index",
    "context_offsets",
    "gather_contexts",
    "laplace_rate_bits",
    "rate_from_raw",
    "scale_from_raw",
]

# Scale parameterisation of Cool-chic v5: b = exp(clamp(s − 4, −5, 5)),
# so b ∈ [exp(−5), exp(5)] = [0.0067, 148.4].
LOG_SCALE_OFFSET = 4.0
LOG_SCALE_MIN = -5.0
LOG_SCALE_MAX = 5.0

#: The probability of a symbol is floored at 2^-24, what the range coder gives the least likely
#: symbol, so that the estimate charges an improbable latent what it costs in the stream.
#: Cool-chic floors at 2^-16 (its coder's precision); with this coder that undercounted every
#: such latent by up to 8 bits, about 1 to 2 % of the latent bits of a 192x128 stream
#: (BENCHMARKS.md, 2026-12-06 09:30).
MAX_BITS_PER_SYMBOL = float(MAX_BITS_PER_LATENT)

_LN2 = math.log(2.0)


def _index_dtype(n_slots: int) -> torch.dtype:
    return torch.int32 if n_slots < 2**31 else torch.int64


def context_index(
    shapes: list[tuple[int, int]] | tuple[tuple[int, int], ...], n_ctx_rowcol: int
) -> Tensor:
    """Index of every context value into the concatenated, flattened grids plus one zero slot.

    The grids are flattened in raster order and concatenated in the order of ``shapes``
    (``N_total`` values); slot ``N_total`` is a zero appended for out-of-grid neighbours.
    For latent p at ``(r, c)`` of its grid and context column k with offset ``(dy, dx)``, the
    neighbour is ``(r + dy, c + dx)``. Built in the final integer dtype, one grid at a time, to
    bound the temporaries for large images.

    Args:
        shapes: ``(h, w)`` of each grid.
        n_ctx_rowcol: N.

    Returns:
        int32 (int64 for huge inputs) tensor ``[N_total, C]`` with values in ``[0, N_total]``,
        ``C = 2N² + 2N``; row p, column k is the slot of the k-th neighbour of latent p.
    """
    offsets = context_offsets(n_ctx_rowcol)
    n_contexts = len(offsets)
    total = sum(h * w for h, w in shapes)
    dtype = _index_dtype(total + 1)
    dy = torch.tensor([o[0] for o in offsets], dtype=dtype)
    dx = torch.tensor([o[1] for o in offsets], dtype=dtype)
    parts: list[Tensor] = []
    base = 0
    for h, w in shapes:
        rows = torch.arange(h, dtype=dtype).view(h, 1, 1) + dy  # [h, 1, C]
        cols = torch.arange(w, dtype=dtype).view(1, w, 1) + dx  # [1, w, C]
        inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)  # [h, w, C]
        slot = torch.where(inside, base + rows * w + cols, total)
        parts.append(slot.reshape(h * w, n_contexts))
        base += h * w
    return torch.cat(parts) if parts else torch.empty(0, n_contexts, dtype=dtype)


def coarser_planes(grids: list[Tensor], n_coarser: int) -> Tensor:
    """The coarser context values of every latent, flat: grid after grid, plane after plane.

    Plane p of grid g holds, at ``(r, c)``, the latent of grid ``g + p + 1`` at
    ``(r >> (p + 1), c >> (p + 1))``: a nearest ×2^(p+1) upsampling cropped to grid g (the
    ceil grid sizes keep the position inside), 0 past the coarsest grid.

    Args:
        grids: ``[h_i, w_i]`` tensors, finest first, sizes as :func:`grid_shapes`.
        n_coarser: P.

    Returns:
        ``[P · Σ h_i·w_i]``, differentiable w.r.t. the grids.
    """
    parts: list[Tensor] = []
    for g, grid in enumerate(grids):
        height, width = grid.shape
        for p in range(n_coarser):
            if g + p + 1 >= len(grids):
                parts.append(grid.new_zeros(height * width))
                continue
            parts.append(_nearest(grids[g + p + 1], p + 1, (height, width)).reshape(-1))
    return torch.cat(parts) if parts else grids[0].new_zeros(0)


class InterFeatureContext(nn.Module):
    """Cool-chic 5's inter-feature context extractor (IFCE), as context planes for the ARM.

    Each of the ``IFCE_GRIDS`` (3) finest grids g gets C_f feature planes: at the resolution of
    grid g + 1, a linear map (with bias) of the co-located values of every coarser coded grid
    (latents and hyper-latents), then nearest-upsampled ×2 and cropped to grid g. Every other
    grid gets zero planes. The ARM reads the C_f values at each latent's own position as the
    last values of its context. Weights start at zero: the model starts as without IFCE.

    The features are rounded half up and clamped to the latent range, as the decoder's integer
    ARM needs its inputs (straight-through gradient): a feature is a predicted latent.

    Args:
        resolutions: downsampling exponent of every coded grid (:func:`grid_resolutions`).
        sources: for each grid that gets features, the coded grids it reads
            (:func:`ifce_sources`).
        n_features: C_f.
    """

    def __init__(self, resolutions: list[int], sources: list[list[int]], n_features: int) -> None:
        super().__init__()
        self.resolutions = tuple(resolutions)
        self.n_features = n_features
        self.sources = tuple(tuple(s) for s in sources)
        self.maps = nn.ModuleList(nn.Linear(len(s), n_features) for s in self.sources)
        with torch.no_grad():
            for layer in self.maps:
                layer.weight.zero_()
                layer.bias.zero_()

    @classmethod
    def for_config(cls, config: ModelConfig) -> InterFeatureContext:
        """The IFCE of an architecture with ``ifce_features`` > 0."""
        return cls(
            grid_resolutions(config.n_grids, config.hyper_grids),
            ifce_sources(config.n_grids, config.hyper_grids),
            config.ifce_features,
        )

    def planes(self, grids: list[Tensor]) -> Tensor:
        """The feature planes of every coded grid, ``[C_f · Σ h·w]``: grid after grid, plane
        after plane, as :func:`coarser_planes` lays them out.

        Args:
            grids: ``[h, w]`` tensors of every coded grid (latents, then hyper-latents).
        """
        parts: list[Tensor] = []
        for g, grid in enumerate(grids):
            height, width = grid.shape
            if g >= len(self.maps):
                parts.append(grid.new_zeros(self.n_features * height * width))
                continue
            # at the next coarser resolution: ceil of this grid's size over 2
            target = (-(-height // 2), -(-width // 2))
            features = _round_to_latent(self._mapped(g, grids, target))
            up = _nearest(features, 1, (height, width))
            parts.append(up.reshape(-1))
        return torch.cat(parts)

    def _mapped(self, g: int, grids: list[Tensor], target: tuple[int, int]) -> Tensor:
        """Grid g's map of its sources, ``[C_f, *target]``, before rounding.

        The map is linear and nearest upsampling commutes with it, so the sum is built from
        the coarsest resolution down: each ×2 step carries C_f planes, not one upsampled copy
        of every source (9 at full size for the finest grid, the bulk of a step's IFCE cost).
        """
        layer = self.maps[g]
        level = self.resolutions[g] + 1
        columns_at: dict[int, list[int]] = {}
        for column, k in enumerate(self.sources[g]):
            columns_at.setdefault(self.resolutions[k], []).append(column)
        coarsest = max(columns_at)
        features = layer.bias
        for resolution in range(coarsest, level - 1, -1):
            steps = resolution - level
            size = (-(-target[0] // (1 << steps)), -(-target[1] // (1 << steps)))
            if resolution < coarsest:
                features = _nearest(features, 1, size).reshape(self.n_features, -1)
            columns = columns_at.get(resolution)
            if columns:
                values = torch.stack([grids[self.sources[g][c]].reshape(-1) for c in columns])
                # the weight's gradient sums over every value: see coolchic.model.ordered
                features = affine_columns(features, layer.weight[:, columns], values)
            features = features.view(self.n_features, *size)
        return features


def _round_to_latent(x: Tensor) -> Tensor:
    """``clamp(floor(x + ½), −64, 63)`` forward, the identity's gradient inside the range."""
    rounded = torch.floor(x + 0.5)
    return torch.clamp(rounded.detach() + (x - x.detach()), LATENT_MIN, LATENT_MAX)


def _nearest(grid: Tensor, steps: int, size: tuple[int, int]) -> Tensor:
    """``grid`` (``[h, w]`` or ``[C, h, w]``) nearest-upsampled ×2^steps, cropped to ``size``."""
    if steps:
        factor = 1 << steps
        *lead, h, w = grid.shape
        grid = (
            grid[..., :, None, :, None]
            .expand(*lead, h, factor, w, factor)
            .reshape(*lead, h * factor, w * factor)
        )
    return grid[..., : size[0], : size[1]]


class ContextGather(nn.Module):
    """The causal contexts of a fixed set of grids (a module, so that the model owns it).

    Args:
        shapes: ``(h, w)`` of each grid, in the order of the concatenated latents.
        n_ctx_rowcol: N.
        n_coarser: P, the coarser grids' values appended to each context.
    """

    def __init__(
        self,
        shapes: list[tuple[int, int]] | tuple[tuple[int, int], ...],
        n_ctx_rowcol: int,
        n_coarser: int = 0,
    ) -> None:
        super().__init__()
        self.shapes = tuple(shapes)
        self.n_ctx_rowcol = n_ctx_rowcol
        self.n_coarser = n_coarser
        self.geometry = context_geometry(self.shapes, n_ctx_rowcol, n_coarser)
        self.n_total = sum(h * w for h, w in self.shapes)

    def layout_input(self, flat: Tensor, ifce: InterFeatureContext | None = None) -> Tensor:
        """The latents followed by their context planes (coarser values, or the IFCE's
        features): what the context layout reads."""
        if not self.n_coarser:
            return flat
        return _with_context_planes(flat, self, ifce)

    def grids_of(self, flat: Tensor) -> list[Tensor]:
        """The ``[h, w]`` views of each grid in ``flat``."""
        return [
            part.view(h, w)
            for part, (h, w) in zip(
                flat.split([h * w for h, w in self.shapes]), self.shapes, strict=True
            )
        ]

    def check(self, flat: Tensor) -> None:
        """Raise ``ValueError`` unless ``flat`` is ``[N_total]``."""
        if flat.shape != (self.n_total,):
            raise ValueError(
                f"flat latents: expected shape ({self.n_total},), found {tuple(flat.shape)}"
            )

    def forward(self, flat: Tensor, ifce: InterFeatureContext | None = None) -> Tensor:
        """Contexts of all latents, ``[N_total, C]`` (0 outside each grid), differentiable.

        Training does not materialise this table (:meth:`Arm.from_latents` builds it band by
        band); it is the plain form, for inspection and tests.
        """
        self.check(flat)
        return causal_contexts(self.layout_input(flat, ifce), self.geometry)


@fusable
def _with_context_planes(
    flat: Tensor, gather: ContextGather, ifce: InterFeatureContext | None
) -> Tensor:
    """:meth:`ContextGather.layout_input`, compiled on large frames: its upsamplings, roundings
    and concatenation are passes over memory. With the coarse-to-fine features, compiling it
    made a step with the inter-feature context 7–19 % faster (BENCHMARKS.md, 2026-12-04 21:45).
    Every model of a given size shares one graph: the modules are inputs, not constants."""
    grids = gather.grids_of(flat)
    planes = coarser_planes(grids, gather.n_coarser) if ifce is None else ifce.planes(grids)
    return torch.cat([flat, planes])


def gather_contexts(grid: Tensor, n_ctx_rowcol: int) -> Tensor:
    """Contexts of every position of one grid, in raster order.

    Args:
        grid: float tensor ``[1, 1, h, w]`` (any h, w >= 1, also smaller than the window).
        n_ctx_rowcol: N.

    Returns:
        Tensor ``[h * w, 2N² + 2N]``: row ``r * w + c`` holds the neighbours of ``(r, c)`` in
        :func:`context_offsets` order, 0 outside the grid. Differentiable w.r.t. ``grid``.
    """
    if grid.dim() != 4 or grid.shape[0] != 1 or grid.shape[1] != 1:
        raise ValueError(f"grid: expected shape [1, 1, h, w], found {tuple(grid.shape)}")
    h, w = grid.shape[-2:]
    gather = ContextGather([(h, w)], n_ctx_rowcol)
    return gather(grid.reshape(-1))


def scale_from_raw(raw_log_scale: Tensor) -> Tensor:
    """Laplace scale ``b = exp(clamp(s − 4, −5, 5))`` in ``[0.0067, 148.4]`` (v5)."""
    return torch.exp(torch.clamp(raw_log_scale - LOG_SCALE_OFFSET, LOG_SCALE_MIN, LOG_SCALE_MAX))


def laplace_rate_bits(y_hat: Tensor, mu: Tensor, scale: Tensor) -> Tensor:
    """Bits ``−log2 P(ŷ)`` of a discretised Laplace, ``P = F(ŷ + ½) − F(ŷ − ½)``, per symbol.

    Computed without cancellation: with ``d = |ŷ − μ|``,

    * ``d ≥ ½``: ``P = ½·exp(−(d − ½)/b)·(−expm1(−1/b))`` (mass of a one-sided tail slice),
      evaluated in the log domain;
    * ``d < ½``: ``P = −½·(expm1(−(½ − d)/b) + expm1(−(½ + d)/b))`` (two same-sign terms).

    ``P`` is floored at 2^-24 (at most 24 bits, :data:`MAX_BITS_PER_SYMBOL`). Value and
    gradients are finite for every finite input and every ``b`` in the ARM range (both branches
    are evaluated on inputs where they are finite, so ``torch.where`` never multiplies a NaN by
    zero).

    Args:
        y_hat: float tensor of (possibly soft-)quantised latents, any shape.
        mu: location, broadcastable to ``y_hat``.
        scale: ``b > 0``, broadcastable to ``y_hat``.

    Returns:
        float tensor of bits, shape of the broadcast, values in ``[0, 16]``.
    """
    distance = torch.abs(y_hat - mu)
    inv_scale = 1.0 / scale
    # Tail branch (d >= 1/2): -log2 P = 1 + (d - 1/2)/(b ln 2) - log2(-expm1(-1/b)).
    slice_mass = -torch.expm1(-inv_scale)
    tail_bits = 1.0 + (distance - 0.5) * (inv_scale / _LN2) - torch.log2(slice_mass)
    # Central branch (d < 1/2), on d clamped to [0, 1/2] so that it stays finite elsewhere.
    near = torch.clamp(distance, max=0.5)
    central_mass = -0.5 * (
        torch.expm1((near - 0.5) * inv_scale) + torch.expm1(-(near + 0.5) * inv_scale)
    )
    central_bits = -torch.log2(central_mass)
    bits = torch.where(distance < 0.5, central_bits, tail_bits)
    return torch.clamp(bits, max=MAX_BITS_PER_SYMBOL)


@fusable
def rate_from_raw(y_hat: Tensor, mu: Tensor, raw_log_scale: Tensor) -> Tensor:
    """:func:`laplace_rate_bits` with the ARM's raw scale, one fused kernel on large inputs."""
    return laplace_rate_bits(y_hat, mu, scale_from_raw(raw_log_scale))


class Arm(nn.Module):
    """MLP mapping C context values to ``(μ, b)`` of a Laplace, one latent per row.

    Hidden layer: residual ``y = relu(Wx + b + x)`` (W, b initialised to 0) when in == out,
    else plain ``y = relu(Wx + b)`` (``W ~ N(0, 1)/out²``, ``b = 0``). Output: linear to 2
    values ``(μ, s)``, ``W ~ N(0, 1)/4``, ``b = 0``; the scale is :func:`scale_from_raw` ``(s)``.
    With a stabiliser (Cool-chic 5), a linear map of the context to ``(μ, s)``, initialised to
    0 and without bias, is added to the output: a linear predictor beside the MLP.

    Args:
        n_contexts: C, input width.
        hidden: widths of the hidden layers.
        stabiliser: add the linear ``C → 2`` map.
        ifce: the inter-feature context whose planes end each context (trained with the ARM).
    """

    def __init__(
        self,
        n_contexts: int,
        hidden: tuple[int, ...],
        stabiliser: bool = False,
        ifce: InterFeatureContext | None = None,
    ) -> None:
        super().__init__()
        if n_contexts < 1:
            raise ValueError(f"n_contexts: expected >= 1, found {n_contexts}")
        self.n_contexts = n_contexts
        self.hidden_widths = tuple(hidden)
        self.hidden = nn.ModuleList()
        residual: list[bool] = []
        width = n_contexts
        for out in hidden:
            layer = nn.Linear(width, out)
            is_residual = out == width
            with torch.no_grad():
                if is_residual:
                    layer.weight.zero_()
                else:
                    layer.weight.normal_().div_(out**2)
                layer.bias.zero_()
            self.hidden.append(layer)
            residual.append(is_residual)
            width = out
        self.is_residual: tuple[bool, ...] = tuple(residual)
        self.output = nn.Linear(width, 2)
        with torch.no_grad():
            self.output.weight.normal_().div_(4.0)
            self.output.bias.zero_()
        self.stabiliser: nn.Linear | None = None
        if stabiliser:
            self.stabiliser = nn.Linear(n_contexts, 2, bias=False)
            with torch.no_grad():
                self.stabiliser.weight.zero_()
        # declared last: the stream's ARM groups end with the inter-feature maps
        self.ifce = ifce

    def layers(self) -> tuple[list[Tensor], list[Tensor], list[bool]]:
        """Weights, biases and ReLU flags of every layer, the residual ``+ x`` folded in.

        A residual hidden layer ``y = relu(Wx + b + x)`` is ``relu((W + I)x + b)``: one matrix
        product, no extra addition.
        """
        weights: list[Tensor] = []
        biases: list[Tensor] = []
        for layer, is_residual in zip(self.hidden, self.is_residual, strict=True):
            weight = layer.weight
            if is_residual:
                eye = torch.eye(weight.shape[0], dtype=weight.dtype, device=weight.device)
                weight = weight + eye
            weights.append(weight)
            biases.append(layer.bias)
        weights.append(self.output.weight)
        biases.append(self.output.bias)
        return weights, biases, [True] * len(self.hidden) + [False]

    def raw(self, contexts: Tensor) -> Tensor:
        """Raw MLP output.

        Args:
            contexts: float tensor ``[N, C]``.

        Returns:
            Tensor ``[N, 2]``: column 0 is ``μ``, column 1 the raw log-scale ``s``.
        """
        return pointwise_mlp(contexts.t(), *self.layers(), skip=self._skip()).t()

    def forward(self, contexts: Tensor) -> tuple[Tensor, Tensor]:
        """Laplace parameters of each row.

        Args:
            contexts: float tensor ``[N, C]``.

        Returns:
            ``(mu, scale)``, each ``[N]``; ``scale`` in ``[0.0067, 148.4]``.
        """
        raw = self.raw(contexts)
        return raw[:, 0], scale_from_raw(raw[:, 1])

    def rate_of(self, flat: Tensor, contexts: ContextGather) -> Tensor:
        """Bits of every latent, its context built band by band.

        Args:
            flat: float tensor ``[N]``, the grids flattened and concatenated.
            contexts: the grids' :class:`ContextGather`.

        Returns:
            ``[N]`` bits, differentiable w.r.t. ``flat`` and the weights.
        """
        contexts.check(flat)
        layout = contexts.layout_input(flat, self.ifce)
        raw = context_mlp(layout, contexts.geometry, *self.layers(), skip=self._skip())
        # unbind, not raw[0] and raw[1]: the backward stacks the two gradients in one pass
        # where each index filled a zeroed [2, N] copy and autograd added the two
        mu, log_scale = raw.unbind(0)
        return rate_from_raw(flat, mu, log_scale)

    def _skip(self) -> Tensor | None:
        """The stabiliser's ``[2, C]`` weight, which the MLP adds in the same pass, or None."""
        return None if self.stabiliser is None else self.stabiliser.weight
