"""Upsampling and synthesis of the decoder in numpy float64: the torch model's forward passes.

The same computation as :meth:`coolchic.model.coolchic.CoolChicModel.decode_from_latents` in
float64 (the filters and layers are described in :mod:`coolchic.model.upsampling` and
:mod:`coolchic.model.synthesis`), written for one image and for speed without torch:

* a 1-D filter pass (polyphase ×2 or pre-concatenation) is a product, per block of
  :data:`BLOCK_POSITIONS` outputs, with one small banded matrix that holds the taps; BLAS
  runs it several times faster than one multiply-add per tap over the map, and each product
  writes its rows (or columns) of the result in place, both phases interleaved;
* the last upsampling level writes into the final ``[n_grids, H, W]`` stack, so no level is
  concatenated or copied;
* runs of 1x1 synthesis layers are one small MLP per chunk of pixels, a ``k x k`` layer one
  matrix product per band of rows on its unfolded neighbourhoods;
* every product stays under :data:`MATMUL_MACS`, so that BLAS runs it on the calling thread.

The order of the additions differs from torch's kernels, so the float64 results differ in the
last bits (about 1e-16 relative); rounded to 8 or 10 bits the decoded samples are the same.
Nothing here depends on the thread count.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from coolchic.model.config import LayerSpec
from coolchic.model.layout import odd_full_index, phase_taps_index, polyphase

__all__ = ["BAND_SAMPLES", "BLOCK_POSITIONS", "MATMUL_MACS", "synthesize", "upsample"]

#: Multiply-accumulates of one matrix product at most. OpenBLAS hands larger products to its
#: threads, which cost far more than they bring on products this thin (measured: 10x slower
#: passes from about 2^20 on, two cores); below it, the operands stay in the CPU cache.
MATMUL_MACS = 1 << 18
#: Output positions per phase computed by one product of a filter pass.
BLOCK_POSITIONS = 4
#: Samples of the padded band of rows a horizontal filter pass works on (2 MiB of float64,
#: in cache while every block of the band reads it).
BAND_SAMPLES = 1 << 18


def _band_matrix(taps: np.ndarray, starts: Sequence[int], count: int) -> np.ndarray:
    """The filter pass over ``count`` positions as a ``[R·count, count + span]`` matrix.

    Output ``R·q + r`` of the pass is ``Σ_j taps[j, r] · padded[q + starts[r] + j]``: for the
    ``count`` positions from ``q0``, row ``R·i + r`` holds phase r's taps from column
    ``i + starts[r] − min(starts)``, the columns being the padded inputs from
    ``q0 + min(starts)``. The same matrix serves every block (the filter does not move).
    """
    n_taps, n_phases = taps.shape
    low, span = min(starts), max(starts) + n_taps - 1 - min(starts)
    matrix = np.zeros((n_phases * count, count + span))
    for i in range(count):
        for r, start in enumerate(starts):
            matrix[n_phases * i + r, i + start - low : i + start - low + n_taps] = taps[:, r]
    return matrix


class _Filter(NamedTuple):
    """A 1-D polyphase filter, as both of its passes (rows, then columns) apply it: ``taps``
    ``[T, R]``, phase r reading the input padded by ``pad`` from ``starts[r]``, the padding
    replicated (``edge``) or zero."""

    taps: np.ndarray
    starts: Sequence[int]
    pad: tuple[int, int]
    edge: bool


def _filter_rows(x: np.ndarray, fir: _Filter, *, length: int) -> np.ndarray:
    """Polyphase FIR along the last axis: ``[rows, n]`` → ``[rows, length]``.

    Output ``R·q + r`` (R phases) is ``Σ_j taps[j, r] · padded[q + starts[r] + j]``, on the
    row padded by ``pad`` samples, replicated (``edge``) or zero. A band of rows is padded,
    then each block of :data:`BLOCK_POSITIONS` positions is one product with
    :func:`_band_matrix` (transposed), written in place.
    """
    rows, n = x.shape
    taps, starts, (left, right), edge = fir
    n_phases = taps.shape[1]
    low = min(starts)
    positions = -(-length // n_phases)
    full = _band_matrix(taps, starts, BLOCK_POSITIONS).T.copy()
    band = max(1, min(MATMUL_MACS // full.size, BAND_SAMPLES // (n + left + right)))
    out = np.empty((rows, length))
    padded = np.zeros((min(band, rows), n + left + right))
    for first_row in range(0, rows, band):
        last_row = min(first_row + band, rows)
        block = padded[: last_row - first_row]
        block[:, left : left + n] = x[first_row:last_row]
        if edge:
            block[:, :left] = x[first_row:last_row, :1]
            block[:, left + n :] = x[first_row:last_row, -1:]
        for first in range(0, positions, BLOCK_POSITIONS):
            count = min(BLOCK_POSITIONS, positions - first)
            matrix = full if count == BLOCK_POSITIONS else _band_matrix(taps, starts, count).T
            inputs = block[:, first + low : first + low + matrix.shape[0]]
            end = min(n_phases * (first + count), length)
            dest = out[first_row:last_row, n_phases * first : end]
            if dest.shape[1] == matrix.shape[1]:
                np.matmul(inputs, matrix, out=dest)
            else:  # the last, cropped block
                dest[...] = (inputs @ matrix)[:, : dest.shape[1]]
    return out


def _filter_columns(x: np.ndarray, fir: _Filter, *, out: np.ndarray) -> None:
    """Polyphase FIR along the first axis: ``[n, width]`` → ``out`` ``[length, width]``.

    As :func:`_filter_rows`, down the columns: each block of :data:`BLOCK_POSITIONS` positions
    is one product of :func:`_band_matrix` with the input rows it reads (a view of ``x``, or a
    gather of whole rows where the block reaches into the padding).
    """
    n, width = x.shape
    taps, starts, (left, _), edge = fir
    n_phases = taps.shape[1]
    low = min(starts)
    length = out.shape[0]
    positions = -(-length // n_phases)
    full = _band_matrix(taps, starts, BLOCK_POSITIONS)
    columns = max(1, MATMUL_MACS // full.size)
    for first in range(0, positions, BLOCK_POSITIONS):
        count = min(BLOCK_POSITIONS, positions - first)
        matrix = full if count == BLOCK_POSITIONS else _band_matrix(taps, starts, count)
        lo = first + low - left  # input row of the block's first padded row
        hi = lo + matrix.shape[1]
        if lo >= 0 and hi <= n:
            inputs = x[lo:hi]
        else:
            wanted = np.arange(lo, hi)
            inputs = x[np.clip(wanted, 0, n - 1)]
            if not edge:
                inputs[(wanted < 0) | (wanted >= n)] = 0.0
        end = min(n_phases * (first + count), length)
        for column in range(0, width, columns):
            stop = min(column + columns, width)
            dest = out[n_phases * first : end, column:stop]
            if dest.shape[0] == matrix.shape[0]:
                np.matmul(matrix, inputs[:, column:stop], out=dest)
            else:  # the last, cropped block
                dest[...] = (matrix @ inputs[:, column:stop])[: dest.shape[0]]


def _upsample_level(stack: np.ndarray, taps: np.ndarray, kernel: int, out: np.ndarray) -> None:
    """Every map of ``stack`` ``[m, h, w]`` ×2 (replicate padding), cropped to ``out``."""
    poly = polyphase(kernel)
    fir = _Filter(taps, poly.starts, (poly.left, poly.right), edge=True)
    m, h, w = stack.shape
    wide = _filter_rows(stack.reshape(m * h, w), fir, length=out.shape[2])
    for index in range(m):
        _filter_columns(wide[index * h : (index + 1) * h], fir, out=out[index])


def _preconcat(grid: np.ndarray, full: np.ndarray, out: np.ndarray) -> None:
    """``out = grid + (w ⊗ w) * grid``, zero padding, ``full``: the odd kernel ``[K]``."""
    half = full.shape[0] // 2
    fir = _Filter(full[:, None], (0,), (half, half), edge=False)
    rows = _filter_rows(grid, fir, length=grid.shape[1])
    _filter_columns(rows, fir, out=out)
    out += grid


def upsample(
    grids: Sequence[np.ndarray],
    transposed_half: np.ndarray,
    preconcat_half: np.ndarray | None,
    *,
    kernel: int,
) -> np.ndarray:
    """All grids upsampled to full resolution and stacked (the torch model's ``Upsampling``).

    Args:
        grids: ``n_grids`` float64 arrays ``[h_i, w_i]``, finest first
            (:func:`~coolchic.model.layout.grid_shapes`).
        transposed_half: ``[n_grids − 1, K/2]`` free taps of each level's ×2 filter.
        preconcat_half: ``[n_grids − 1, (K_p + 1)/2]`` free taps of the pre-concatenation
            filters (centre last), or None when there are none.
        kernel: K, the even size of the ×2 filter.

    Returns:
        float64 ``[n_grids, H, W]``; map k is grid k upsampled k times.
    """
    n_grids = len(grids)
    height, width = grids[0].shape
    taps = transposed_half[:, phase_taps_index(polyphase(kernel))]  # [levels, K/2, 2]
    preconcat = None
    if preconcat_half is not None:
        preconcat = preconcat_half[:, odd_full_index(2 * preconcat_half.shape[1] - 1)]
    result = np.empty((n_grids, height, width))
    stack = grids[-1][None]
    for level in range(n_grids - 2, -1, -1):
        h, w = grids[level].shape
        new = result if level == 0 else np.empty((n_grids - level, h, w))
        _upsample_level(stack, taps[level], kernel, new[1:])
        if preconcat is None:
            new[0] = grids[level]
        else:
            _preconcat(grids[level], preconcat[level], new[0])
        stack = new
    if n_grids == 1:
        result[0] = grids[0]
    return result


def _pointwise_run(
    x: np.ndarray, weights: Sequence[np.ndarray], biases: Sequence[np.ndarray], relus: list[bool]
) -> np.ndarray:
    """1x1 layers on ``[C, P]``, a chunk of pixels at a time → ``[C_out, P]``."""
    pixels = x.shape[1]
    out = np.empty((weights[-1].shape[0], pixels))
    chunk_pixels = max(1, MATMUL_MACS // max(weight.size for weight in weights))
    columns = [bias[:, None] for bias in biases]
    for first in range(0, pixels, chunk_pixels):
        chunk = x[:, first : first + chunk_pixels]
        for weight, bias, relu in zip(weights, columns, relus, strict=True):
            chunk = weight @ chunk
            chunk += bias
            if relu:
                np.maximum(chunk, 0.0, out=chunk)
        out[:, first : first + chunk_pixels] = chunk
    return out


def _conv_layer(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, spec: LayerSpec) -> np.ndarray:
    """One ``k x k`` layer, replicate padding, on ``[C, H, W]`` (residual added, no ReLU)."""
    channels, height, width = x.shape
    k = spec.kernel
    padded = np.pad(x, ((0, 0), (k // 2, k // 2), (k // 2, k // 2)), mode="edge")
    matrix = weight.reshape(weight.shape[0], channels * k * k)  # [out, (c, dy, dx)]
    out = np.empty((weight.shape[0], height, width))
    band = max(1, MATMUL_MACS // (matrix.size * width))
    unfolded = np.empty((channels, k, k, min(band, height), width))
    for first in range(0, height, band):
        last = min(first + band, height)
        block = unfolded[..., : last - first, :]
        for dy in range(k):
            for dx in range(k):
                block[:, dy, dx] = padded[:, first + dy : last + dy, dx : dx + width]
        y = matrix @ block.reshape(channels * k * k, -1)
        y += bias[:, None]
        if spec.kind == "residual":
            y += x[:, first:last].reshape(channels, -1)
        out[:, first:last] = y.reshape(-1, last - first, width)
    return out


def synthesize(
    x: np.ndarray,
    layers: Sequence[LayerSpec],
    weights: Sequence[np.ndarray],
    biases: Sequence[np.ndarray],
    stabiliser: np.ndarray | None = None,
) -> np.ndarray:
    """The synthesis, as :class:`~coolchic.model.synthesis.Synthesis` runs it on one image.

    Args:
        x: float64 ``[C, H, W]``, the upsampled latents.
        layers: the layer specs, first to last.
        weights: float64 ``[out, in, k, k]`` per layer.
        biases: float64 ``[out]`` per layer.
        stabiliser: float64 ``[C_out, C, 1, 1]``, the 1x1 linear map of ``x`` added to the
            output, or None.

    Returns:
        float64 ``[C_out, H, W]``, unclamped.
    """
    source = x
    _, height, width = x.shape
    index = 0
    while index < len(layers):
        end = index
        while end < len(layers) and layers[end].kernel == 1:
            end += 1
        if end > index:  # a run of 1x1 layers: one MLP, residuals folded into the weights
            run = range(index, end)
            matrices = [weights[i].reshape(weights[i].shape[:2]) for i in run]
            matrices = [
                m + np.eye(m.shape[0]) if layers[i].kind == "residual" else m
                for i, m in zip(run, matrices, strict=True)
            ]
            relus = [layers[i].nonlinearity == "relu" for i in run]
            flat = _pointwise_run(
                x.reshape(x.shape[0], -1), matrices, [biases[i] for i in run], relus
            )
            x = flat.reshape(-1, height, width)
            index = end
        else:
            x = _conv_layer(x, weights[index], biases[index], layers[index])
            if layers[index].nonlinearity == "relu":
                np.maximum(x, 0.0, out=x)
            index += 1
    if stabiliser is not None:
        linear = _pointwise_run(
            source.reshape(source.shape[0], -1),
            [stabiliser.reshape(stabiliser.shape[:2])],
            [np.zeros(stabiliser.shape[0])],
            [False],
        )
        x += linear.reshape(-1, height, width)  # x is the last layer's own output
    return x
