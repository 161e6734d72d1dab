"""Learned upsampling of the latent grids to full resolution (the v3.4 / v5 variant).

Starting from the coarsest grid, each level ``j`` (``j = n_grids − 2 … 0``) turns the stack of
already-upsampled maps at the resolution of grid ``j + 1`` into maps at the resolution of grid
``j``, then prepends grid ``j`` itself::

    stack = [grid n−1]
    for j = n−2 … 0:
        stack = crop_to(grid j, up2_j(stack))          # every map of the stack, same filter
        stack = [grid j + preconcat_j(grid j)] + stack  # finest first

The output ``[1, n_grids, H, W]`` has channel k = grid k upsampled k times (channel 0 = grid 0).

``up2_j`` is a stride-2 transposed convolution with a separable, symmetric, even-sized K x K
kernel ``w ⊗ w`` (K = 8: the 1-D kernel is ``[a, b, c, d, d, c, b, a]``, 4 parameters per level),
initialised to the bicubic (a = −0.75) kernel, so that it starts as PyTorch's bicubic ×2
(``align_corners=False``): replicate-pad by K/2, transposed conv, crop ``K − 1 + K/2`` on every
side (→ exactly ``2h x 2w``). Here it is computed in its polyphase form: each output sample is a
K/2-tap correlation of the replicate-padded input, with even and odd outputs using the even and
odd taps of ``w`` (identical result, no wasted work on the padding).

``preconcat_j`` is a residual (``x + conv(x)``) separable symmetric odd-sized conv with zero
padding, initialised to a centred delta, so it starts as ``2·x`` (as upstream does; the factor is
absorbed by the synthesis).

Training runs the filters as two 1-D passes, with exactly K/2 (upsampling) and K_p
(pre-concatenation) multiplications per output sample and pass: per tap on large maps,
``unfold`` + one small matmul on mid-size ones, and on small ones (the coarse levels, where the
time goes to dispatching operators) each level as a few dense matrix products. The 2-D
``w ⊗ w`` form is kept as a reference (``separable=False``), equal up to float rounding. The
decoder runs the same passes in numpy (:mod:`coolchic.decoder.networks`); the polyphase
description and the initial filters both use live in :mod:`coolchic.model.layout`.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from coolchic.model import layout
from coolchic.model.fused import fusable
from coolchic.model.layout import (
    BICUBIC_HALF_KERNEL,
    BILINEAR_HALF_KERNEL,
    Polyphase,
    odd_full_index,
    phase_taps_index,
    polyphase,
)
from coolchic.model.ordered import one_thread, repeat_lines, sum_rows

__all__ = [
    "BICUBIC_HALF_KERNEL",
    "BILINEAR_HALF_KERNEL",
    "Polyphase",
    "Upsampling",
    "initial_half_kernel",
    "polyphase",
    "preconcat_filter",
    "upsample2x",
]


def initial_half_kernel(kernel: int) -> Tensor:
    """:func:`coolchic.model.layout.initial_half_kernel` as a float32 tensor ``[K / 2]``."""
    return torch.from_numpy(layout.initial_half_kernel(kernel))


def _even_full(half: Tensor) -> Tensor:
    """``[..., K/2]`` → symmetric ``[..., K]`` (``half`` then its mirror)."""
    return torch.cat([half, half.flip(-1)], dim=-1)


def _odd_full_index(kernel: int) -> Tensor:
    """Positions in the half-kernel ``[(K+1)/2]`` (centre last) of the K taps of the full one."""
    return torch.from_numpy(odd_full_index(kernel))


def _odd_full(half: Tensor) -> Tensor:
    """``[..., (K+1)/2]`` (centre last) → symmetric ``[..., K]``."""
    return half[..., _odd_full_index(2 * half.shape[-1] - 1)]


def _taps_index(poly: Polyphase) -> Tensor:
    """``[K/2, 2]`` positions in the half-kernel of the taps of each phase (column r)."""
    return torch.from_numpy(phase_taps_index(poly))


def _taps_matrix(half: Tensor, poly: Polyphase) -> Tensor:
    """``[..., K/2]`` half-kernel(s) → ``[..., K/2, 2]`` phase taps in correlation order."""
    return half[..., _taps_index(poly)]


#: Input samples from which an eager FIR pass uses :class:`_Fir1d` (measured at 128x96 and
#: 1920x1080 on two cores: the unfold form is faster below, much slower above).
FIR_MIN_ELEMENTS = 65_536

#: Levels whose finer grid is at most this many samples high and wide run eagerly as dense
#: matrix products (:class:`_DenseLevel`): ``n`` multiplications per output sample where the
#: taps need 4 or 7, but one operator a level instead of about forty. Small maps are
#: dispatch-bound: the coarse levels of every frame, all levels of a small one
#: (BENCHMARKS.md, 2026-12-07).
DENSE_MAX_SIZE = 128


class _FirPass(NamedTuple):
    """Where one polyphase FIR pass runs: along ``dim`` (-1 or -2), padded by ``pad`` in
    ``mode``, output phase r from ``starts[r]`` of the padded input, cut to ``length``."""

    dim: int
    pad: tuple[int, int]
    mode: str
    starts: tuple[int, ...]
    length: int


def _padded(x: Tensor, dim: int, pad: tuple[int, int], mode: str) -> Tensor:
    """``x`` padded by ``pad`` along ``dim`` (-1 or -2); ``x`` itself when ``pad`` adds nothing.

    Under ``torch.compile`` a replicate pad is written as the edge samples, expanded and
    concatenated: the compiler has no kernel of its own for ``replication_pad2d``'s backward
    and runs it eagerly, a zero-filled map and a pass over it for each of the stack's passes.
    """
    if not any(pad):
        return x
    if mode == "replicate" and torch.compiler.is_compiling():
        left, right = pad
        n = x.shape[dim]
        parts = [x]
        if left:
            parts.insert(0, _repeat_along(x.narrow(dim, 0, 1), dim, left))
        if right:
            parts.append(_repeat_along(x.narrow(dim, n - 1, 1), dim, right))
        return torch.cat(parts, dim=dim)
    padding = (*pad, 0, 0) if dim == -1 else (0, 0, *pad)
    return F.pad(x, padding, mode=mode)


def _repeat_along(edge: Tensor, dim: int, count: int) -> Tensor:
    """``edge`` (size 1 along ``dim``) expanded to ``count`` samples along ``dim``."""
    shape = list(edge.shape)
    shape[dim] = count
    return edge.expand(shape)


class _Fir1d(torch.autograd.Function):
    """Polyphase FIR filter along one dimension, as weighted sums of shifted slices.

    Output phase r at position q is ``Σ_j taps[j, r] · padded[q + starts[r] + j]`` along
    ``dim``; the phases are interleaved (output ``q·R + r``) and the result is cut to
    ``length``. Small filters (4 or 7 taps) run through ``unfold`` + matmul spend their time
    copying windows and in tiny batched products; here each tap is one fused multiply-add
    over the map, in the forward and in the backward (BENCHMARKS.md, "training step").
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        x: Tensor,
        taps: Tensor,
        fir: _FirPass,
    ) -> Tensor:
        dim, pad, mode, starts, length = fir
        n = x.shape[dim]
        padded = _padded(x, dim, pad, mode)
        out, phases = _phase_views(x, n, len(starts), dim)
        for r, start in enumerate(starts):
            weights = taps[:, r].tolist()
            phases[r].copy_(padded.narrow(dim, start, n)).mul_(weights[0])
            for j in range(1, len(weights)):
                phases[r].add_(padded.narrow(dim, start + j, n), alpha=weights[j])
        ctx.save_for_backward(padded, taps)
        ctx.geometry = (dim, pad, mode, starts, n, tuple(x.shape))  # type: ignore[attr-defined]
        return out.narrow(dim, 0, length)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: Tensor
    ) -> tuple[Tensor | None, ...]:
        padded, taps = ctx.saved_tensors  # type: ignore[attr-defined]
        dim, pad, mode, starts, n, x_shape = ctx.geometry  # type: ignore[attr-defined]
        full, phases = _phase_views(padded, n, len(starts), dim)
        full.zero_().narrow(dim, 0, grad.shape[dim]).copy_(grad)
        grad_taps = None
        if ctx.needs_input_grad[1]:  # type: ignore[attr-defined]
            grad_taps = torch.empty_like(taps)
            for r, start in enumerate(starts):
                phase = phases[r].contiguous()
                product = torch.empty_like(phase)
                for j in range(taps.shape[0]):
                    torch.mul(phase, padded.narrow(dim, start + j, n), out=product)
                    lines = product.reshape(-1, product.shape[-1])
                    grad_taps[j, r] = sum_rows(lines).sum()  # same at any thread count
        grad_x = None
        if ctx.needs_input_grad[0]:  # type: ignore[attr-defined]
            grad_padded = torch.zeros_like(padded)
            for r, start in enumerate(starts):
                weights = taps[:, r].tolist()
                for j, weight in enumerate(weights):
                    grad_padded.narrow(dim, start + j, n).add_(phases[r], alpha=weight)
            grad_x = _unpad_gradient(grad_padded, dim, pad, mode, x_shape[dim])
        return grad_x, grad_taps, None


class _WindowTaps(torch.autograd.Function):
    """``windows @ taps`` (``[..., T]`` windows, ``[T, R]`` taps) for small maps, with the taps'
    gradient summed in an order that does not depend on the threads: one matrix product on
    one thread (:func:`coolchic.model.ordered.one_thread`; with more, it splits the sum over
    windows between them)."""

    @staticmethod
    def forward(ctx: Any, windows: Tensor, taps: Tensor) -> Tensor:  # type: ignore[override]
        n_taps = taps.shape[0]
        # one copy of the windows, tap-major, kept for the backward
        by_tap = windows.movedim(-1, 0).reshape(n_taps, -1)
        ctx.save_for_backward(by_tap, taps)
        return (by_tap.t() @ taps).view(*windows.shape[:-1], taps.shape[1])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:  # type: ignore[override]
        by_tap, taps = ctx.saved_tensors
        n_phases = taps.shape[1]
        grad_windows = grad @ taps.t() if ctx.needs_input_grad[0] else None
        grad_taps = None
        if ctx.needs_input_grad[1]:
            with one_thread():
                grad_taps = by_tap @ grad.reshape(-1, n_phases)  # [T, R]
        return grad_windows, grad_taps


#: A frame size needs up to 20 selections, the largest 0.5 MB (a 128-wide pre-concatenation
#: pass); 64 keep the last three sizes, a few MB, however many sizes a daemon meets.
@functools.lru_cache(maxsize=64)
def _pass_selection(
    n: int, n_taps: int, fir: _FirPass, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """``[length · n, T · R]`` counts S with ``matrix.flatten() = S @ taps.flatten()``: the
    ``[length, n]`` matrix of one polyphase pass (its padding folded in) as a linear map of
    its ``[T, R]`` taps."""
    _, (left, _), mode, starts, length = fir
    n_phases = len(starts)
    selection = np.zeros((length, n, n_taps, n_phases), dtype=np.float64)
    for out in range(length):
        position, phase = divmod(out, n_phases)
        for tap in range(n_taps):
            source = starts[phase] + position + tap - left
            if mode == "replicate":
                source = min(max(source, 0), n - 1)
            elif not 0 <= source < n:
                continue  # zero padding
            selection[out, source, tap, phase] += 1.0
    flat = selection.reshape(length * n, n_taps * n_phases)
    return torch.from_numpy(flat).to(dtype=dtype, device=device)


def _pass_selections(
    x: Tensor,
    taps: Tensor,
    pad: tuple[int, int],
    mode: str,
    starts: tuple[int, ...],
    size: tuple[int, int],
) -> tuple[Tensor, Tensor]:
    """The selections of a pass along the rows (``dim=-1``) of ``x`` and of one along its
    columns (``dim=-2``), to ``size``."""
    n_taps = taps.shape[0]
    return (
        _pass_selection(
            x.shape[-1], n_taps, _FirPass(-1, pad, mode, starts, size[1]), x.dtype, x.device
        ),
        _pass_selection(
            x.shape[-2], n_taps, _FirPass(-2, pad, mode, starts, size[0]), x.dtype, x.device
        ),
    )


def _matrix(selection: Tensor, taps: Tensor, n: int) -> Tensor:
    """The ``[length, n]`` matrix of a pass from its taps (:func:`_pass_selection`)."""
    return (selection @ taps.reshape(-1)).view(-1, n)


def _grad_taps(grads: tuple[Tensor, Tensor], selections: tuple[Tensor, Tensor]) -> Tensor:
    """The taps' gradient (flat) from the gradients of a row pass's and a column pass's
    matrices: the transpose of :func:`_matrix`, summed over both passes."""
    return sum(grad.reshape(1, -1) @ sel for grad, sel in zip(grads, selections, strict=True))


def _lines_product(a: Tensor, b: Tensor) -> Tensor:
    """``Σ_maps a[m] @ b[m]ᵀ`` for ``[M, 1, p, c]`` and ``[M, 1, q, c]`` → ``[p, q]``."""
    p, q = a.shape[-2], b.shape[-2]
    return a.movedim(-2, 0).reshape(p, -1) @ b.movedim(-2, 0).reshape(q, -1).t()


class _DenseLevel(torch.autograd.Function):
    """One level of :func:`_separable_stack` on small maps, as matrix products.

    The upsampled stack is ``V @ stack @ Hᵀ`` and the filtered grid ``grid + Pv @ grid @ Phᵀ``,
    where each matrix is its pass's taps through a fixed selection (:func:`_pass_selection`);
    the output is the two concatenated, as :func:`_separable_stack`'s level. The gradients of
    the matrices (sums over every map's lines) are taken on one thread
    (:func:`coolchic.model.ordered.one_thread`), so they round alike at any thread count.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        stack: Tensor,
        grid: Tensor,
        taps: Tensor,
        preconcat_taps: Tensor | None,
        selections: tuple[Tensor, ...],
    ) -> Tensor:
        h, w = stack.shape[-2:]
        height, width = grid.shape[-2:]
        rows, columns = _matrix(selections[0], taps, w), _matrix(selections[1], taps, h)
        wide = stack @ rows.t()
        up = columns @ wide
        saved: list[Tensor] = [stack, grid, wide, rows, columns, *selections]
        if preconcat_taps is not None:
            p_rows = _matrix(selections[2], preconcat_taps, width)
            p_columns = _matrix(selections[3], preconcat_taps, height)
            filtered_rows = grid @ p_rows.t()
            grid = grid + p_columns @ filtered_rows
            saved += [filtered_rows, p_rows, p_columns]
        ctx.save_for_backward(*saved)
        ctx.shapes = (taps.shape, None if preconcat_taps is None else preconcat_taps.shape)
        return torch.cat([grid, up], dim=0)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        stack, grid, wide, rows, columns, *rest = ctx.saved_tensors
        selections = rest[:4] if len(rest) > 4 else rest[:2]
        taps_shape, preconcat_shape = ctx.shapes
        n_grid = grid.shape[0]
        grad_grid, grad_up = grad[:n_grid], grad[n_grid:]
        grad_wide = columns.t() @ grad_up
        grad_stack = grad_wide @ rows
        with one_thread():
            grad_rows = grad_wide.reshape(-1, rows.shape[0]).t() @ stack.reshape(-1, rows.shape[1])
            grad_columns = _lines_product(grad_up, wide)
            grad_taps = _grad_taps((grad_rows, grad_columns), selections[:2])
        grad_preconcat = None
        if preconcat_shape is not None:
            filtered_rows, p_rows, p_columns = rest[4:]
            grad_filtered = p_columns.t() @ grad_grid
            with one_thread():
                grad_p_rows = grad_filtered.reshape(-1, p_rows.shape[0]).t() @ grid.reshape(
                    -1, p_rows.shape[1]
                )
                grad_p_columns = _lines_product(grad_grid, filtered_rows)
                grad_preconcat = _grad_taps((grad_p_rows, grad_p_columns), selections[2:])
            grad_preconcat = grad_preconcat.view(preconcat_shape)
            grad_grid = grad_grid + grad_filtered @ p_rows
        return grad_stack, grad_grid, grad_taps.view(taps_shape), grad_preconcat, None


def _phase_views(like: Tensor, n: int, n_phases: int, dim: int) -> tuple[Tensor, list[Tensor]]:
    """A new ``[..., n·R (along dim), ...]`` tensor and its R phase views (every R-th sample)."""
    shape = list(like.shape)
    shape[dim] = n * n_phases
    out = like.new_empty(shape)
    if dim == -1:
        split = out.view(*shape[:-1], n, n_phases)
        return out, [split[..., r] for r in range(n_phases)]
    split = out.view(*shape[:-2], n, n_phases, shape[-1])
    return out, [split[..., r, :] for r in range(n_phases)]


def _unpad_gradient(
    grad_padded: Tensor, dim: int, pad: tuple[int, int], mode: str, size: int
) -> Tensor:
    """Gradient w.r.t. the unpadded input: replicated edges fold back onto the edge samples."""
    left, right = pad
    grad = grad_padded.narrow(dim, left, size).clone()
    if mode == "replicate":
        if left:
            grad.narrow(dim, 0, 1).add_(grad_padded.narrow(dim, 0, left).sum(dim, keepdim=True))
        if right:
            tail = grad_padded.narrow(dim, left + size, right).sum(dim, keepdim=True)
            grad.narrow(dim, size - 1, 1).add_(tail)
    return grad


def _fir(
    x: Tensor,
    taps: Tensor,
    dim: int,
    pad: tuple[int, int],
    mode: str,
    starts: tuple[int, ...],
    length: int,
) -> Tensor:
    """One polyphase FIR pass (see :class:`_Fir1d`).

    Eagerly it is :class:`_Fir1d` from :data:`FIR_MIN_ELEMENTS` input samples on, and below
    one ``unfold`` and one small matrix product (per-tap operators cost more in dispatch than
    in arithmetic on small maps); under ``torch.compile`` (large images, see
    :func:`_separable_stack`) the same sums are written as plain tensor operations, which the
    compiler fuses with their neighbours into a few loops, backward included.
    """
    n = x.shape[dim]
    compiling = torch.compiler.is_compiling()
    if not compiling and x.numel() >= FIR_MIN_ELEMENTS:
        return _Fir1d.apply(x, taps, _FirPass(dim, pad, mode, starts, length))
    padded = _padded(x, dim, pad, mode)
    if not compiling:
        # Small maps: few large operators beat many small ones (one product for all taps).
        windows = padded.unfold(dim, taps.shape[0], 1)  # window last
        if dim == -2:
            windows = windows.transpose(-2, -3)  # [..., positions, w, T] → [..., w, positions, T]
        products = _WindowTaps.apply(windows, taps)  # [..., positions, R]
        phases = [products[..., start : start + n, r] for r, start in enumerate(starts)]
        out = torch.stack(phases, dim=-1).flatten(-2)
        if dim == -2:
            out = out.transpose(-1, -2)
        return out.narrow(dim, 0, length)
    coefficients = _compiled_taps(taps, x)
    phases = [
        sum(coefficients[j, r] * padded.narrow(dim, start + j, n) for j in range(taps.shape[0]))
        for r, start in enumerate(starts)
    ]
    if dim == -1:
        out = torch.stack(phases, dim=-1).flatten(-2)
    else:
        out = torch.stack(phases, dim=-2).flatten(-3, -2)
    return out.narrow(dim, 0, length)


#: Rows from which a compiled pass takes one copy of its taps per output row, below which one
#: per output sample (see :func:`_compiled_taps`). With 32 the training step's gradients were
#: the same at every thread count tried (1 to 8) from 192x128 to 1920x1080; with a copy per
#: row down to one row, a kernel on a 15-row map split its rows' sums between threads; with
#: per-sample copies below 256 rows the step at 1152x768 was about 10 % slower (BENCHMARKS.md,
#: 2026-12-05 07:10).
PER_LINE_MIN_LINES = 32


def _compiled_taps(taps: Tensor, x: Tensor) -> Tensor:
    """``[T, R, …]`` coefficients of a compiled pass over ``x``: ``coefficients[j, r]``
    multiplies the input shifted by tap j for output phase r.

    The taps' gradient is a sum over a whole map, which a compiled kernel splits between its
    threads, rounding differently with each thread count. So the taps come in copies
    (:func:`coolchic.model.ordered.repeat_lines`), whose gradients the compiler leaves as
    short sums, added in a fixed order outside: one copy per output row (a kernel with many
    rows runs each row's sum on one thread), one per output sample below
    :data:`PER_LINE_MIN_LINES` rows, where a kernel may split a row's sum between threads.
    """
    n_taps, n_phases = taps.shape
    rows = x.shape[-2]  # of the input and of every output phase, along either dimension
    if rows >= PER_LINE_MIN_LINES:
        per_row = repeat_lines(taps, rows)  # [rows, T, R]
        return per_row.permute(1, 2, 0).reshape(n_taps, n_phases, rows, 1)
    per_sample = repeat_lines(taps, x.numel())  # an output phase has x's shape
    return per_sample.permute(1, 2, 0).reshape(n_taps, n_phases, *x.shape)


def _upsample_separable(x: Tensor, taps: Tensor, poly: Polyphase, size: tuple[int, int]) -> Tensor:
    """Horizontal then vertical polyphase pass, each cropped to ``size``."""
    pad = (poly.left, poly.right)
    wide = _fir(x, taps, -1, pad, "replicate", poly.starts, size[1])
    return _fir(wide, taps, -2, pad, "replicate", poly.starts, size[0])


def _preconcat_separable(x: Tensor, full: Tensor) -> Tensor:
    """``x + (w ⊗ w) * x`` as two zero-padded 1-D passes; ``full``: ``[K]`` odd kernel."""
    kernel = full.shape[-1]
    pad = (kernel // 2, kernel // 2)
    taps = full[:, None]
    rows = _fir(x, taps, -1, pad, "constant", (0,), x.shape[-1])
    return x + _fir(rows, taps, -2, pad, "constant", (0,), x.shape[-2])


def upsample2x(
    x: Tensor,
    half_kernel: Tensor,
    *,
    size: tuple[int, int] | None = None,
    separable: bool = True,
) -> Tensor:
    """One ×2 step of every map of a stack (replicate-pad K/2, transposed conv, crop).

    Args:
        x: float tensor ``[B, 1, h, w]`` (maps folded into the batch).
        half_kernel: ``[K/2]`` free taps of the symmetric 1-D filter (outermost first).
        size: ``(height, width)`` to crop the ``2h x 2w`` result to (each ≤ the doubled size);
            None keeps ``2h x 2w``.
        separable: two 1-D polyphase passes, K/2 multiplications per output sample each
            (training and decoding); False runs one 2-D polyphase convolution with the
            ``w ⊗ w`` kernel (reference, same result up to float rounding).

    Returns:
        Tensor ``[B, 1, height, width]``.
    """
    h, w = x.shape[-2:]
    height, width = size if size is not None else (2 * h, 2 * w)
    if not (0 < height <= 2 * h and 0 < width <= 2 * w):
        raise ValueError(f"size: expected at most {(2 * h, 2 * w)}, found {(height, width)}")
    poly = polyphase(2 * half_kernel.shape[-1])
    if separable:
        return _upsample_separable(x, _taps_matrix(half_kernel, poly), poly, (height, width))
    full = _even_full(half_kernel)
    # 2-D: phase (r_v, r_h) correlates the padded input with taps_{r_v} ⊗ taps_{r_h}, each placed
    # at its start in a window of length L (zeros elsewhere), then pixel_shuffle interleaves.
    length = max(poly.starts) + poly.n_taps
    phases = full.new_zeros(2, length)
    for r in (0, 1):
        start = poly.starts[r]
        phases[r, start : start + poly.n_taps] = full[list(poly.taps[r])]
    weight = (phases[:, None, :, None] * phases[None, :, None, :]).reshape(4, 1, length, length)
    pad = (poly.left, length - 1 - poly.left)
    padded = F.pad(x, (*pad, *pad), mode="replicate")
    return F.pixel_shuffle(F.conv2d(padded, weight), 2)[..., :height, :width]


def preconcat_filter(x: Tensor, half_kernel: Tensor, *, separable: bool = True) -> Tensor:
    """Residual symmetric filter ``x + (w ⊗ w) * x`` with zero padding ("same" size).

    Args:
        x: float tensor ``[B, 1, h, w]``.
        half_kernel: ``[(K+1)/2]`` free taps of the odd symmetric 1-D filter, centre last.
        separable: two 1-D passes of K multiplications per sample (training and decoding);
            False uses one 2-D convolution with the ``w ⊗ w`` kernel (reference).

    Returns:
        Tensor ``[B, 1, h, w]``.
    """
    full = _odd_full(half_kernel)
    if separable:
        return _preconcat_separable(x, full)
    return x + F.conv2d(x, torch.outer(full, full)[None, None], padding=full.shape[-1] // 2)


@fusable
def _separable_stack(
    finest: Tensor,
    coarser: list[Tensor],
    taps: Tensor,
    preconcat: Tensor | None,
    poly: Polyphase,
) -> Tensor:
    """All levels with 1-D passes, coarsest first; ``[n_grids, 1, H, W]``, finest map first.

    Compiled as a whole on large images (:mod:`coolchic.model.fused`).
    """
    grids = [finest, *coarser]
    stack = grids[-1]
    for level in range(len(grids) - 2, -1, -1):
        target = grids[level]
        size = (target.shape[-2], target.shape[-1])
        if max(size) <= DENSE_MAX_SIZE and not torch.compiler.is_compiling():
            stack = _dense_level(stack, target, taps[level], preconcat, level, poly)
            continue
        up = _upsample_separable(stack, taps[level], poly, size)
        if preconcat is not None:
            target = _preconcat_separable(target, preconcat[level])
        stack = torch.cat([target, up], dim=0)
    return stack


def _dense_level(
    stack: Tensor,
    target: Tensor,
    taps: Tensor,
    preconcat: Tensor | None,
    level: int,
    poly: Polyphase,
) -> Tensor:
    """:func:`_separable_stack`'s level ``level`` as :class:`_DenseLevel`."""
    size = (target.shape[-2], target.shape[-1])
    selections = _pass_selections(
        stack, taps, (poly.left, poly.right), "replicate", poly.starts, size
    )
    preconcat_taps = None
    if preconcat is not None:
        preconcat_taps = preconcat[level][:, None]
        half = preconcat_taps.shape[0] // 2
        selections += _pass_selections(target, preconcat_taps, (half, half), "constant", (0,), size)
    return _DenseLevel.apply(stack, target, taps, preconcat_taps, selections)


class Upsampling(nn.Module):
    """Per-level learned ×2 upsampling and pre-concatenation filters.

    Args:
        n_grids: number of latent grids (``n_grids − 1`` levels).
        kernel: even size K ≥ 4 of the transposed-conv filter (K/2 parameters per level).
        preconcat_kernel: odd size K_p of the pre-concatenation filter ((K_p + 1)/2 parameters
            per level); 0 disables it.

    Parameters:
        transposed_half: ``[n_grids − 1, K/2]``; row j produces grid j's resolution from grid
            j + 1's, outermost tap first.
        preconcat_half: ``[n_grids − 1, (K_p + 1)/2]`` (None when disabled); row j filters
            grid j; the last column is the centre tap.
    """

    def __init__(self, n_grids: int, *, kernel: int, preconcat_kernel: int) -> None:
        super().__init__()
        if n_grids < 1:
            raise ValueError(f"n_grids: expected >= 1, found {n_grids}")
        if preconcat_kernel < 0 or (preconcat_kernel and preconcat_kernel % 2 == 0):
            raise ValueError(
                f"preconcat_kernel: expected 0 or an odd integer, found {preconcat_kernel}"
            )
        self.n_grids = n_grids
        self.kernel = kernel
        self.preconcat_kernel = preconcat_kernel
        initial = self.initial_values()
        self.transposed_half = nn.Parameter(initial["transposed_half"])
        self.preconcat_half: nn.Parameter | None = None
        if preconcat_kernel:
            self.preconcat_half = nn.Parameter(initial["preconcat_half"])
        # Gather maps from the free parameters to the filters of all levels (one op each).
        self._poly = polyphase(kernel)
        self.register_buffer("_taps_index", _taps_index(self._poly), persistent=False)
        self.register_buffer(
            "_preconcat_index", _odd_full_index(max(preconcat_kernel, 1)), persistent=False
        )

    @property
    def n_levels(self) -> int:
        """Number of ×2 steps, ``n_grids − 1``."""
        return self.n_grids - 1

    def initial_values(self) -> dict[str, Tensor]:
        """The fixed starting value of each parameter, by name: bicubic and Dirac filters.

        Deterministic, so the decoder knows them too (one home:
        :func:`coolchic.model.layout.upsampling_initial_values`).
        """
        values = layout.upsampling_initial_values(self.n_grids, self.kernel, self.preconcat_kernel)
        return {name: torch.from_numpy(value) for name, value in values.items()}

    def forward(self, grids: list[Tensor], *, separable: bool = True) -> Tensor:
        """Upsample and stack all grids.

        Args:
            grids: ``n_grids`` float tensors ``[1, 1, h_i, w_i]``, finest first, with
                ``h_{i+1} = ceil(h_i / 2)`` (as :func:`coolchic.model.latents.grid_shapes`).
            separable: 1-D passes (default, training and decoding) or the 2-D ``w ⊗ w``
                kernels (reference).

        Returns:
            Tensor ``[1, n_grids, H, W]``; channel k is grid k upsampled k times.
        """
        if len(grids) != self.n_grids:
            raise ValueError(f"grids: expected {self.n_grids} tensors, found {len(grids)}")
        # Filters of all levels, each built by a single gather from the free parameters.
        taps = self.transposed_half[:, self._taps_index]  # [n_levels, K/2, 2]
        preconcat = (
            None
            if self.preconcat_half is None
            else self.preconcat_half[:, self._preconcat_index]  # [n_levels, K_p]
        )
        if separable:
            stack = _separable_stack(grids[0], grids[1:], taps, preconcat, self._poly)
        else:
            stack = grids[-1]
            for level in range(self.n_levels - 1, -1, -1):
                target = grids[level]
                size = (target.shape[-2], target.shape[-1])
                up = upsample2x(stack, self.transposed_half[level], size=size, separable=False)
                if self.preconcat_half is not None:
                    target = preconcat_filter(target, self.preconcat_half[level], separable=False)
                stack = torch.cat([target, up], dim=0)
        return stack.reshape(1, self.n_grids, *stack.shape[-2:])
