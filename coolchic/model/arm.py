"""Auto-regressive probability model (ARM) of the latents (codec-spec §1.4).

Every latent ``ŷ`` is modelled as a discretised Laplace ``P(ŷ) = F(ŷ + ½) − F(ŷ − ½)`` whose
location ``μ`` and scale ``b`` come from a small MLP fed with already-decoded neighbours of the
same grid (the *context*). The context of Cool-chic v2 with ``n_ctx_rowcol = N`` is the causal
half of the ``(2N+1) x (2N+1)`` window centred on the latent, in raster order, top-left first:
the N full rows above (each 2N + 1 wide, centred) then the N positions on the left::

    N = 2:   x  x  x  x  x        12 context values
             x  x  x  x  x
             x  x  ŷ  .  .

Outside the grid the context is 0. In training all latents of all grids are modelled at once:
their contexts are gathered with one precomputed index (:func:`context_index`) into the
concatenated latents and fed to the MLP as a single ``[N_total, C]`` batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "LOG_SCALE_MAX",
    "LOG_SCALE_MIN",
    "LOG_SCALE_OFFSET",
    "MAX_BITS_PER_SYMBOL",
    "Arm",
    "ContextGather",
    "context_index",
    "context_inverse_index",
    "context_offsets",
    "gather_contexts",
    "laplace_rate_bits",
    "scale_from_raw",
]

# Scale parameterisation of Cool-chic v5 (codec-spec §1.4): b = exp(clamp(s − 4, −5, 5)),
# so b ∈ [exp(−5), exp(5)] = [0.0067, 148.4].
LOG_SCALE_OFFSET = 4.0
LOG_SCALE_MIN = -5.0
LOG_SCALE_MAX = 5.0

#: The probability of a symbol is floored at 2^-16, so one latent never costs more than 16 bits.
MAX_BITS_PER_SYMBOL = 16.0

_LN2 = math.log(2.0)


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


def _index_dtype(n_slots: int) -> torch.dtype:
    return torch.int32 if n_slots < 2**31 else torch.int64


def _neighbour_table(
    shapes: list[tuple[int, int]] | tuple[tuple[int, int], ...],
    n_ctx_rowcol: int,
    *,
    inverse: bool,
) -> Tensor:
    """Shared body of :func:`context_index` and :func:`context_inverse_index`.

    For latent p at ``(r, c)`` of its grid and context column k with offset ``(dy, dx)``, the
    neighbour is ``(r + dy, c + dx)`` (forward) or ``(r − dy, c − dx)`` (inverse). Computed in
    the final integer dtype, one grid at a time, to bound the temporaries for large images.
    """
    offsets = context_offsets(n_ctx_rowcol)
    n_contexts = len(offsets)
    total = sum(h * w for h, w in shapes)
    dtype = _index_dtype(total * n_contexts + 1)
    sign = -1 if inverse else 1
    dy = torch.tensor([sign * o[0] for o in offsets], dtype=dtype)
    dx = torch.tensor([sign * o[1] for o in offsets], dtype=dtype)
    column = torch.arange(n_contexts, dtype=dtype)
    parts: list[Tensor] = []
    base = 0
    for h, w in shapes:
        rows = torch.arange(h, dtype=dtype).view(h, 1, 1) + dy  # [h, 1, C]
        cols = torch.arange(w, dtype=dtype).view(1, w, 1) + dx  # [1, w, C]
        inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)  # [h, w, C]
        position = base + rows * w + cols
        if inverse:
            slot = torch.where(inside, position * n_contexts + column, total * n_contexts)
        else:
            slot = torch.where(inside, position, total)
        parts.append(slot.reshape(h * w, n_contexts))
        base += h * w
    return torch.cat(parts) if parts else torch.empty(0, n_contexts, dtype=dtype)


def context_index(
    shapes: list[tuple[int, int]] | tuple[tuple[int, int], ...], n_ctx_rowcol: int
) -> Tensor:
    """Index of every context value into the concatenated, flattened grids plus one zero slot.

    The grids are flattened in raster order and concatenated in the order of ``shapes``
    (``N_total`` values); slot ``N_total`` is a zero appended for out-of-grid neighbours.

    Args:
        shapes: ``(h, w)`` of each grid.
        n_ctx_rowcol: N.

    Returns:
        int32 (int64 for huge inputs) tensor ``[N_total, C]`` with values in ``[0, N_total]``,
        ``C = 2N² + 2N``; row p, column k is the slot of the k-th neighbour of latent p.
    """
    return _neighbour_table(shapes, n_ctx_rowcol, inverse=False)


def context_inverse_index(
    shapes: list[tuple[int, int]] | tuple[tuple[int, int], ...], n_ctx_rowcol: int
) -> Tensor:
    """Transpose of :func:`context_index`, used to back-propagate through the gather.

    Returns:
        int32 (int64 for huge inputs) tensor ``[N_total, C]`` with values in
        ``[0, N_total·C]``: row p, column k is the flat position ``q·C + k`` of the context
        entry that reads latent p as the k-th neighbour of latent q, or ``N_total·C`` (a zero
        slot) when q is outside the grid.
    """
    return _neighbour_table(shapes, n_ctx_rowcol, inverse=True)


class _GatherContexts(torch.autograd.Function):
    """Gather with a gather-based backward (``index_select``'s scatter-add backward is slow)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, flat: Tensor, index: Tensor, inverse: Tensor
    ) -> Tensor:
        ctx.save_for_backward(inverse)
        return F.pad(flat, (0, 1)).index_select(0, index.view(-1)).view(index.shape)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: Tensor
    ) -> tuple[Tensor, None, None]:
        (inverse,) = ctx.saved_tensors  # type: ignore[attr-defined]
        padded = F.pad(grad.reshape(-1), (0, 1))
        return padded.index_select(0, inverse.view(-1)).view(inverse.shape).sum(dim=1), None, None


class ContextGather(nn.Module):
    """Contexts of all latents of a fixed set of grids, with precomputed index buffers.

    Args:
        shapes: ``(h, w)`` of each grid, in the order of the concatenated input.
        n_ctx_rowcol: N.
    """

    def __init__(
        self, shapes: list[tuple[int, int]] | tuple[tuple[int, int], ...], n_ctx_rowcol: int
    ) -> None:
        super().__init__()
        self.shapes = tuple(shapes)
        self.n_ctx_rowcol = n_ctx_rowcol
        # Built on first use, on the input's device: a decoder, which codes latents with the
        # integer ARM and never calls this module, does not pay for the tables.
        self.register_buffer("index", None, persistent=False)
        self.register_buffer("inverse", None, persistent=False)

    def forward(self, flat: Tensor) -> Tensor:
        """Gather contexts.

        Args:
            flat: float tensor ``[N_total]``, the grids flattened and concatenated.

        Returns:
            Tensor ``[N_total, C]`` (0 outside each grid), differentiable w.r.t. ``flat``.
        """
        if self.index is None or self.inverse is None:
            self.index = context_index(self.shapes, self.n_ctx_rowcol).to(flat.device)
            self.inverse = context_inverse_index(self.shapes, self.n_ctx_rowcol).to(flat.device)
        n_total = self.index.shape[0]
        if flat.shape != (n_total,):
            raise ValueError(
                f"flat latents: expected shape ({n_total},), found {tuple(flat.shape)}"
            )
        return _GatherContexts.apply(flat, self.index, self.inverse)


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
    gather = ContextGather([(h, w)], n_ctx_rowcol).to(grid.device)
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

    ``P`` is floored at 2^-16 (at most 16 bits). Value and gradients are finite for every
    finite input and every ``b`` in the ARM range (both branches are evaluated on inputs where
    they are finite, so ``torch.where`` never multiplies a NaN by zero).

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


class Arm(nn.Module):
    """MLP mapping C context values to ``(μ, b)`` of a Laplace, one latent per row.

    Hidden layer: residual ``y = relu(Wx + b + x)`` (W, b initialised to 0) when in == out,
    else plain ``y = relu(Wx + b)`` (``W ~ N(0, 1)/out²``, ``b = 0``). Output: linear to 2
    values ``(μ, s)``, ``W ~ N(0, 1)/4``, ``b = 0``; the scale is :func:`scale_from_raw` ``(s)``.

    Args:
        n_contexts: C, input width.
        hidden: widths of the hidden layers.
    """

    def __init__(self, n_contexts: int, hidden: tuple[int, ...]) -> None:
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

    def raw(self, contexts: Tensor) -> Tensor:
        """Raw MLP output.

        Args:
            contexts: float tensor ``[N, C]``.

        Returns:
            Tensor ``[N, 2]``: column 0 is ``μ``, column 1 the raw log-scale ``s``.
        """
        x = contexts
        for layer, is_residual in zip(self.hidden, self.is_residual, strict=True):
            weight = layer.weight
            if is_residual:
                # y = Wx + b + x as one matmul with W + I: no extra [N, d] addition.
                eye = torch.eye(weight.shape[0], dtype=weight.dtype, device=weight.device)
                weight = weight + eye
            # The matmul output is fresh and not needed by its backward: ReLU in place.
            x = torch.relu_(F.linear(x, weight, layer.bias))
        return self.output(x)

    def forward(self, contexts: Tensor) -> tuple[Tensor, Tensor]:
        """Laplace parameters of each row.

        Args:
            contexts: float tensor ``[N, C]``.

        Returns:
            ``(mu, scale)``, each ``[N]``; ``scale`` in ``[0.0067, 148.4]``.
        """
        raw = self.raw(contexts)
        return raw[:, 0], scale_from_raw(raw[:, 1])
