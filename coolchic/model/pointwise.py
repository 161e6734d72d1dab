"""Pointwise MLPs run in cache-sized chunks, with the activations recomputed in the backward.

The ARM (one MLP per latent, on its gathered context) and the 1x1 layers of the synthesis (one
MLP per pixel) are where a training step spends its memory traffic: written plainly, every
hidden layer is a full-size tensor (a 24-wide ARM layer at 1920x1080 is 265 MB) that is written,
read back by the ReLU, kept for the backward, read again there, and met by a same-size
gradient. Here the rows are processed ``CHUNK_COLUMNS`` at a time, so that each chunk's hidden
layers stay in the CPU cache; nothing but the inputs is saved for the backward, which
recomputes each chunk's forward before back-propagating through it. The extra matrix products
cost far less than the memory passes they replace (BENCHMARKS.md, "training step").

Layout: channels first, ``[channels, rows]``, as the synthesis has its features
(``[C, H·W]``); a chunk is a column block. The ARM's contexts are built for a band of rows of
one latent grid at a time, by unfolding the zero-padded grid (no index table), and their
gradient goes back by the adjoint fold.

An optional *skip* matrix maps each column's input straight to its output and is added there:
Cool-chic 5's linear "stabiliser" beside the ARM and the synthesis, computed in the same pass
as the MLP on inputs already in the cache, so that it costs a few products and no memory pass.

Each output column depends only on its own input column. Every chunk is computed by one
thread, whichever thread takes it; the weight gradients are kept per chunk and summed in chunk
order, and the ARM's input gradient is added in two rounds of bands that never overlap. So the
results do not depend on the number of threads: a seeded run writes the same bits with one
thread or many.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from coolchic.model.native import MlpKernel, kernel
from coolchic.model.ordered import WORKERS, sum_rows

__all__ = [
    "CHUNK_COLUMNS",
    "causal_contexts",
    "context_geometry",
    "context_mlp",
    "pointwise_mlp",
]

#: Columns per chunk: a 24-wide float32 hidden layer of 8,192 columns is 768 KB, which stays
#: in a core's L2 cache with its neighbours (measured fastest among 4k-64k here).
CHUNK_COLUMNS = 16384

_FLOAT = 4  # bytes per float32: the C kernel takes addresses


#: A chunk with its place in the layout's list: ``(index, chunk)``.
_Item = tuple[int, Any]


def _forward_chunk(
    x: Tensor, weights: Sequence[Tensor], biases: Sequence[Tensor], relus: Sequence[bool]
) -> list[Tensor]:
    """Activations ``[x, a_1, …, a_L]`` of one chunk, ``a_l = relu?(W_l a_{l-1} + b_l)``."""
    activations = [x]
    for weight, bias, relu in zip(weights, biases, relus, strict=True):
        z = torch.addmm(bias[:, None], weight, activations[-1])
        activations.append(torch.relu_(z) if relu else z)
    return activations


class _Gradients:
    """Weight, bias (and skip) gradients of every chunk, summed in chunk order."""

    def __init__(self, n_chunks: int) -> None:
        self.per_chunk: list[list[Tensor]] = [[] for _ in range(n_chunks)]

    def backward_chunk(
        self,
        index: int,
        grad: Tensor,
        activations: list[Tensor],
        weights: Sequence[Tensor],
        relus: Sequence[bool],
        skip: bool,
    ) -> Tensor:
        """Back-propagate chunk ``index``, keeping its weight, bias (and skip) gradients.

        Returns:
            The gradient of the first layer's pre-activation, ``[C_1, n]``; the input gradient
            is ``W_1ᵀ`` times it, left to the caller to form in the layout it needs.
        """
        n_layers = len(weights)
        grads: list[Tensor] = [grad] * (2 * n_layers)
        if skip:
            grads.append(grad @ activations[0].t())
        for layer in range(n_layers - 1, -1, -1):
            if relus[layer]:
                grad = torch.ops.aten.threshold_backward(grad, activations[layer + 1], 0.0)
            grads[layer] = grad @ activations[layer].t()
            grads[n_layers + layer] = grad.sum(dim=1)
            if layer:
                grad = weights[layer].t() @ grad
        self.per_chunk[index] = grads
        return grad

    def totals(self) -> list[Tensor]:
        """Weight, bias, then any skip gradients, each summed in chunk order."""
        return [
            sum_rows(torch.stack([grads[k].reshape(-1) for grads in self.per_chunk])).view_as(
                self.per_chunk[0][k]
            )
            for k in range(len(self.per_chunk[0]))
        ]


def _split(
    params: Sequence[Tensor], relus: Sequence[bool]
) -> tuple[list[Tensor], list[Tensor], Tensor | None]:
    """The flat ``(*weights, *biases[, skip])`` argument list of the Function, split."""
    n_layers = len(relus)
    skip = params[2 * n_layers] if len(params) > 2 * n_layers else None
    return list(params[:n_layers]), list(params[n_layers : 2 * n_layers]), skip


class _Columns:
    """How :func:`pointwise_mlp` cuts its input: blocks of ``CHUNK_COLUMNS`` columns.

    A layout of :class:`_ChunkedMlp`, like :class:`_PaddedGrids`: the chunks, the MLP's inputs
    and output columns of each, and how the input gradient is put together.
    """

    def __init__(self, n_columns: int) -> None:
        self.n_columns = n_columns
        self._offsets: Tensor | None = None

    def pad(self, x: Tensor) -> Tensor:
        # the columns are the MLP's inputs as they are; the C kernel reads rows of them
        return x if x.stride(1) == 1 else x.contiguous()

    def chunks(self, *, whole: bool = True) -> list[slice]:
        return [
            slice(start, min(start + CHUNK_COLUMNS, self.n_columns))
            for start in range(0, self.n_columns, CHUNK_COLUMNS)
        ]

    def inputs(self, x: Tensor, chunk: slice) -> Tensor:
        return x[:, chunk]

    def columns(self, chunk: slice) -> slice:
        return chunk

    #: No two columns read the same input: the C kernel writes each column's input gradient
    #: once instead of adding it.
    disjoint_inputs = True

    def new_input_gradient(self, x: Tensor) -> Tensor:
        """One tensor for all the chunks, not zeroed: every column is written once (assigned
        by the PyTorch form, written by the C kernel)."""
        return torch.empty_like(x)

    def rounds(self, items: list[_Item]) -> list[list[_Item]]:
        """The chunks write disjoint columns of the input gradient: one round."""
        return [items]

    def add_input_gradient(self, buffer: Tensor, chunk: slice, grad: Tensor) -> None:
        buffer[:, chunk] = grad

    def input_gradient(self, buffer: Tensor) -> Tensor:
        return buffer

    def run(self, source: Tensor, chunk: slice) -> _Run:
        if self._offsets is None:  # the same for every chunk: input row k starts k rows down
            self._offsets = torch.arange(source.shape[0], dtype=torch.int64) * source.stride(0)
        return _Run(chunk.start, self._offsets, 0, 1, chunk.stop - chunk.start, chunk.start)


@dataclass(frozen=True)
class _Run:
    """A chunk as the C kernel reads it: ``rows`` rows of ``width`` columns.

    Input k of column j of row r is ``source[start + offsets[k] + r · row_stride + j]``; the
    outputs go to columns ``first_column …`` of the ``[C_out, N]`` result, row after row.
    """

    start: int
    offsets: Tensor
    row_stride: int
    rows: int
    width: int
    first_column: int

    def inputs(self, source: Tensor) -> tuple[int, int, int, int, int]:
        """The kernel's input arguments: address, offsets, row stride, rows, width."""
        address = source.data_ptr() + _FLOAT * self.start
        return address, self.offsets.data_ptr(), self.row_stride, self.rows, self.width

    def columns_of(self, channels_first: Tensor) -> tuple[int, int]:
        """Address of this run's first column in a ``[C, N]`` tensor, and its channel stride."""
        return channels_first.data_ptr() + _FLOAT * self.first_column, channels_first.stride(0)


@dataclass(frozen=True)
class _Band:
    """Rows ``first … end − 1`` of one latent grid: a chunk of the context MLP."""

    grid: int
    first: int
    end: int


class _PaddedGrids:
    """The latent grids, each with N zero rows above and N zero columns on either side.

    A causal context window then never leaves its padded grid: the context of row r of a grid
    is the ``(N + 1) x (2N + 1)`` window of padded rows ``r … r + N``, cut to its first
    ``2N² + 2N`` values in raster order: one shifted copy per context position, and the
    gradient goes back as one shifted addition per position (both faster here than
    ``F.unfold`` / ``F.fold``). With ``n_coarser`` = P > 0, each grid also has P *coarser
    planes* of its padded shape, after all the grids: plane p holds the co-located latent of
    grid ``g + p + 1`` (nearest-upsampled, 0 past the coarsest grid), the context's last P
    values. All of it shares one flat buffer, so that its gradient is one tensor.

    The layout's input ``x`` is the flat latents ``[N_total]`` followed, when P > 0, by the
    coarser planes' interiors ``[P · N_total]``, grid after grid and plane after plane
    (:func:`coarser_planes` builds them); its output has one column per latent.
    """

    def __init__(
        self, shapes: Sequence[tuple[int, int]], n_ctx_rowcol: int, n_coarser: int = 0
    ) -> None:
        self.shapes = tuple(shapes)
        self.n = n_ctx_rowcol
        self.window = (n_ctx_rowcol + 1, 2 * n_ctx_rowcol + 1)
        self.n_spatial = 2 * n_ctx_rowcol * (n_ctx_rowcol + 1)
        self.n_coarser = n_coarser
        self.n_contexts = self.n_spatial + n_coarser
        self.padded_shapes = [(h + self.n, w + 2 * self.n) for h, w in self.shapes]
        sizes = [h * w for h, w in self.padded_shapes]
        self.starts = [sum(sizes[:g]) for g in range(len(sizes))]
        planes = [size * n_coarser for size in sizes]
        self.plane_starts = [sum(sizes) + sum(planes[:g]) for g in range(len(sizes))]
        self.size = sum(sizes) + sum(planes)
        self.flat_starts = [sum(h * w for h, w in self.shapes[:g]) for g in range(len(sizes))]
        self.n_columns = sum(h * w for h, w in self.shapes)
        self._index: Tensor | None = None
        self._context_offsets: dict[int, Tensor] = {}

    def grid(self, buffer: Tensor, g: int) -> Tensor:
        """Padded grid g, ``[h + N, w + 2N]``, a view of ``buffer``."""
        height, width = self.padded_shapes[g]
        return buffer[self.starts[g] : self.starts[g] + height * width].view(height, width)

    def interior(self, buffer: Tensor, g: int) -> Tensor:
        """The ``[h, w]`` latents of grid g inside its padding, a view of ``buffer``."""
        width = self.shapes[g][1]
        return self.grid(buffer, g)[self.n :, self.n : self.n + width]

    def plane(self, buffer: Tensor, g: int, p: int) -> Tensor:
        """The ``[h, w]`` interior of coarser plane p of grid g, a view of ``buffer``."""
        (height, width), w = self.padded_shapes[g], self.shapes[g][1]
        start = self.plane_starts[g] + p * height * width
        padded = buffer[start : start + height * width].view(height, width)
        return padded[self.n :, self.n : self.n + w]

    def _interiors(self, buffer: Tensor) -> Iterator[Tensor]:
        """Every ``[h, w]`` interior in the order of the flat input ``x``, one view at a time
        (each is taken after the previous one was written: autograd needs that)."""
        for g in range(len(self.shapes)):
            yield self.interior(buffer, g)
        for g in range(len(self.shapes)):
            for p in range(self.n_coarser):
                yield self.plane(buffer, g, p)

    def pad(self, flat: Tensor) -> Tensor:
        buffer = flat.new_zeros(self.size)
        start = 0
        for view in self._interiors(buffer):
            h, w = view.shape
            view.copy_(flat[start : start + h * w].view(h, w))
            start += h * w
        return buffer

    def unpad(self, buffer: Tensor) -> Tensor:
        return torch.cat([view.reshape(-1) for view in self._interiors(buffer)])

    def chunks(self, *, whole: bool = True) -> list[_Band]:
        """The bands of rows, ``CHUNK_COLUMNS`` latents or so each (one per grid at least).

        With ``whole``, a small image is a single chunk of all its grids (PyTorch form).
        """
        if whole and self.n_columns <= CHUNK_COLUMNS:
            return [_WHOLE]  # a small image: one gather beats many small copies
        bands = []
        for g, (h, w) in enumerate(self.shapes):
            rows = max(self.n, 1, CHUNK_COLUMNS // w)
            bands.extend(_Band(g, first, min(first + rows, h)) for first in range(0, h, rows))
        return bands

    def columns(self, band: _Band) -> slice:
        """The band's latents in the flat (concatenated, raster-order) layout."""
        if band is _WHOLE:
            return slice(0, self.n_columns)
        w = self.shapes[band.grid][1]
        start = self.flat_starts[band.grid]
        return slice(start + band.first * w, start + band.end * w)

    def inputs(self, buffer: Tensor, band: _Band) -> Tensor:
        """The ``[C, rows · w]`` contexts of a band (C contiguous rows of an unfolded window)."""
        if band is _WHOLE:
            index = self._whole_index(buffer.device)
            return buffer.index_select(0, index.view(-1)).view(index.shape)
        rows = self.grid(buffer, band.grid)[band.first : band.end + self.n]
        height, width = band.end - band.first, self.shapes[band.grid][1]
        out = buffer.new_empty(self.n_contexts, height, width)
        for k in range(self.n_spatial):
            dy, dx = divmod(k, self.window[1])
            out[k] = rows[dy : dy + height, dx : dx + width]
        for p in range(self.n_coarser):
            out[self.n_spatial + p] = self.plane(buffer, band.grid, p)[band.first : band.end]
        return out.view(self.n_contexts, height * width)

    #: Context windows overlap: each band adds to the input gradient (see :meth:`rounds`).
    disjoint_inputs = False

    def new_input_gradient(self, buffer: Tensor) -> Tensor:
        """One zeroed buffer for all the bands (see :meth:`rounds`)."""
        return torch.zeros_like(buffer)

    def rounds(self, items: list[_Item]) -> list[list[_Item]]:
        """The bands in two rounds, every other band of each grid in each.

        A band's contexts reach the N rows above it, which belong to the band before (a band
        has N rows or more, but for a grid's last): two bands of one round never write the
        same value, and each value adds its own band's terms and the next band's in an order
        that does not depend on the threads.
        """
        rounds: tuple[list[_Item], list[_Item]] = ([], [])
        seen: dict[int, int] = {}
        for item in items:
            grid = item[1].grid
            rounds[seen.get(grid, 0) % 2].append(item)
            seen[grid] = seen.get(grid, 0) + 1
        return [part for part in rounds if part]

    def run(self, _source: Tensor, band: _Band) -> _Run:
        width = self.shapes[band.grid][1]
        padded_width = self.padded_shapes[band.grid][1]
        return _Run(
            start=self.starts[band.grid] + band.first * padded_width,
            offsets=self._offsets(band.grid),
            row_stride=padded_width,
            rows=band.end - band.first,
            width=width,
            first_column=self.flat_starts[band.grid] + band.first * width,
        )

    def _offsets(self, g: int) -> Tensor:
        """Where each context value sits, from grid g's window top-left (coarser planes last)."""
        if g not in self._context_offsets:
            height, padded_width = self.padded_shapes[g]
            positions = map(self._window_position, range(self.n_spatial))
            spatial = [dy * padded_width + dx for dy, dx in positions]
            # the co-located value: N rows down and N columns in, in plane p
            planes = [
                self.plane_starts[g]
                + p * height * padded_width
                - self.starts[g]
                + self.n * padded_width
                + self.n
                for p in range(self.n_coarser)
            ]
            self._context_offsets[g] = torch.tensor(spatial + planes, dtype=torch.int64)
        return self._context_offsets[g]

    def _window_position(self, k: int) -> tuple[int, int]:
        """Row and column of context k in the causal window (top-left 0)."""
        return divmod(k, self.window[1])

    def add_input_gradient(self, buffer: Tensor, band: _Band, grad: Tensor) -> None:
        """Add the gradient ``[C, rows · w]`` of a band's contexts to ``buffer``."""
        if band is _WHOLE:
            index = self._whole_index(buffer.device)
            buffer.index_add_(0, index.view(-1), grad.reshape(-1))
            return
        rows = self.grid(buffer, band.grid)[band.first : band.end + self.n]
        height, width = band.end - band.first, self.shapes[band.grid][1]
        window_width = self.window[1]
        for k in range(self.n_spatial):
            dy, dx = divmod(k, window_width)
            rows[dy : dy + height, dx : dx + width].add_(grad[k].view(height, width))
        for p in range(self.n_coarser):
            plane = self.plane(buffer, band.grid, p)[band.first : band.end]
            plane.add_(grad[self.n_spatial + p].view(height, width))

    def input_gradient(self, buffer: Tensor) -> Tensor:
        return self.unpad(buffer)

    def _whole_index(self, device: torch.device) -> Tensor:
        """``[C, N]`` positions in the padded buffer of every context value (small images)."""
        if self._index is None or self._index.device != device:
            parts = []
            for g, (h, w) in enumerate(self.shapes):
                rows = torch.arange(h).view(1, h, 1)
                cols = torch.arange(w).view(1, 1, w)
                window_start = self.starts[g] + rows * self.padded_shapes[g][1] + cols
                offsets = self._offsets(g).view(-1, 1, 1)
                parts.append((window_start + offsets).reshape(self.n_contexts, h * w))
            self._index = torch.cat(parts, dim=1).to(device)
        return self._index


#: The single chunk of a small image: all grids at once.
_WHOLE = _Band(-1, 0, 0)


class _Packed:
    """The MLP as the C kernel takes it: flat weights, flat biases, widths, ReLUs, skip."""

    def __init__(
        self,
        weights: Sequence[Tensor],
        biases: Sequence[Tensor],
        relus: Sequence[bool],
        skip: Tensor | None,
    ):
        self.shapes = [w.shape for w in weights]
        self.skip = None if skip is None else skip.detach().contiguous()
        self.weights = torch.cat([w.detach().reshape(-1) for w in weights])
        self.biases = torch.cat([b.detach().reshape(-1) for b in biases])
        widths = [weights[0].shape[1], *(w.shape[0] for w in weights)]
        self.dims = torch.tensor(widths, dtype=torch.int32)
        self.relus = torch.tensor(relus, dtype=torch.uint8)
        self.n_layers = len(weights)

    def arguments(self) -> tuple[int, int, int, int, int, int | None]:
        return (
            self.n_layers,
            self.dims.data_ptr(),
            self.weights.data_ptr(),
            self.biases.data_ptr(),
            self.relus.data_ptr(),
            None if self.skip is None else self.skip.data_ptr(),
        )

    def split(self, flat_weights: Tensor, flat_biases: Tensor) -> list[Tensor]:
        """Flat weight and bias gradients back into the layers' shapes, weights first."""
        sizes = [shape.numel() for shape in self.shapes]
        weights = [
            part.view(shape)
            for part, shape in zip(flat_weights.split(sizes), self.shapes, strict=True)
        ]
        return [*weights, *flat_biases.split([shape[0] for shape in self.shapes])]


def _native_kernel(x: Tensor, params: Sequence[Tensor], n_layers: int) -> MlpKernel | None:
    """The C kernel if it is available and takes these tensors (float32 on the CPU)."""
    if x.device.type != "cpu" or any(t.dtype != torch.float32 for t in (x, *params)):
        return None
    native = kernel()
    if native is None:
        return None
    weights = params[:n_layers]
    widths = [weights[0].shape[1], *(w.shape[0] for w in weights)]
    return native if native.fits(widths) else None


class _ChunkedMlp(torch.autograd.Function):
    """The MLP on every chunk of a layout (:class:`_Columns`, :class:`_PaddedGrids`) →
    ``[C_out, N]``; the backward recomputes each chunk's activations. Each chunk is one call
    of the C kernel (:mod:`coolchic.model.native`) where it is available, a few PyTorch
    operators otherwise."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        x: Tensor,
        layout: _Columns | _PaddedGrids,
        relus: tuple[bool, ...],
        *params: Tensor,
    ) -> Tensor:
        weights, biases, skip = _split(params, relus)
        source = layout.pad(x)
        out = x.new_empty(weights[-1].shape[0], layout.n_columns)
        native = _native_kernel(x, params, len(relus))
        if native is not None:
            packed = _Packed(weights, biases, relus, skip)

            def job(chunk: Any) -> None:
                run = layout.run(source, chunk)
                native.forward(*run.inputs(source), *packed.arguments(), *run.columns_of(out))

            WORKERS.map(layout.chunks(whole=False), job, torch_ops=False)
        else:

            def job(chunk: Any) -> None:
                inputs = layout.inputs(source, chunk)
                result = _forward_chunk(inputs, weights, biases, relus)[-1]
                if skip is not None:
                    result = torch.addmm(result, skip, inputs)
                out[:, layout.columns(chunk)] = result

            WORKERS.map(layout.chunks(), job)
        ctx.save_for_backward(source, *params)
        ctx.layout = layout  # type: ignore[attr-defined]
        ctx.relus = relus  # type: ignore[attr-defined]
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad_out: Tensor
    ) -> tuple[Tensor | None, ...]:
        relus: tuple[bool, ...] = ctx.relus  # type: ignore[attr-defined]
        source, *params = ctx.saved_tensors  # type: ignore[attr-defined]
        layout: _Columns | _PaddedGrids = ctx.layout  # type: ignore[attr-defined]
        need_x = ctx.needs_input_grad[0]  # type: ignore[attr-defined]
        native = _native_kernel(source, params, len(relus))
        if native is not None:
            grad_x, grad_params = _native_backward(
                native, layout, source, params, relus, grad_out, need_x
            )
            return (grad_x, None, None, *grad_params)

        weights, biases, skip = _split(params, relus)
        items = list(enumerate(layout.chunks()))
        gradients = _Gradients(len(items))
        grad_source = layout.new_input_gradient(source) if need_x else None

        def job(item: _Item) -> None:
            index, chunk = item
            activations = _forward_chunk(layout.inputs(source, chunk), weights, biases, relus)
            chunk_grad_out = grad_out[:, layout.columns(chunk)]
            grad = gradients.backward_chunk(
                index, chunk_grad_out, activations, weights, relus, skip is not None
            )
            if grad_source is not None:
                grad_inputs = weights[0].t() @ grad
                if skip is not None:
                    grad_inputs = grad_inputs.addmm_(skip.t(), chunk_grad_out)
                layout.add_input_gradient(grad_source, chunk, grad_inputs)

        for round_items in layout.rounds(items) if need_x else [items]:
            WORKERS.map(round_items, job)
        grad_x = None if grad_source is None else layout.input_gradient(grad_source)
        return (grad_x, None, None, *gradients.totals())


def _native_backward(
    native: MlpKernel,
    layout: _Columns | _PaddedGrids,
    source: Tensor,
    params: Sequence[Tensor],
    relus: tuple[bool, ...],
    grad_out: Tensor,
    need_x: bool,
) -> tuple[Tensor | None, list[Tensor]]:
    """The backward of :class:`_ChunkedMlp` with one C call per chunk.

    Each chunk adds into its own row of weight, bias and skip gradients, summed in chunk order
    at the end, and into the one input gradient round by round (see the layouts' ``rounds``),
    or writes its columns of it where no two columns share an input (``disjoint_inputs``).
    """
    weights, biases, skip = _split(params, relus)
    packed = _Packed(weights, biases, relus, skip)
    grad_out = grad_out.contiguous()
    items = list(enumerate(layout.chunks(whole=False)))
    grad_weights = packed.weights.new_zeros(len(items), packed.weights.numel())
    grad_biases = packed.biases.new_zeros(len(items), packed.biases.numel())
    grad_skips = None if skip is None else skip.new_zeros(len(items), skip.numel())
    grad_source = layout.new_input_gradient(source) if need_x else None

    def job(item: _Item) -> None:
        index, chunk = item
        run = layout.run(source, chunk)
        grad_in = 0
        if grad_source is not None:
            grad_in = grad_source.data_ptr() + _FLOAT * run.start
        status = native.backward(
            *run.inputs(source),
            *packed.arguments(),
            *run.columns_of(grad_out),
            grad_in or None,
            int(layout.disjoint_inputs),
            grad_weights[index].data_ptr(),
            grad_biases[index].data_ptr(),
            None if grad_skips is None else grad_skips[index].data_ptr(),
        )
        if status != 0:
            raise MemoryError("the pointwise kernel could not allocate its gradient lanes")

    for round_items in layout.rounds(items) if need_x else [items]:
        WORKERS.map(round_items, job, torch_ops=False)
    grad_x = None if grad_source is None else layout.input_gradient(grad_source)
    grads = packed.split(sum_rows(grad_weights), sum_rows(grad_biases))
    if grad_skips is not None:
        grads.append(sum_rows(grad_skips).view_as(skip))
    return grad_x, grads


def pointwise_mlp(
    x: Tensor,
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    relus: Sequence[bool],
    skip: Tensor | None = None,
) -> Tensor:
    """The same MLP on every column of ``x``, chunked, activations recomputed in the backward.

    Args:
        x: float tensor ``[C_in, P]`` (rows may be strided; each column is one input).
        weights: ``W_l`` of shape ``[C_l, C_{l-1}]``, first layer first.
        biases: ``b_l`` of shape ``[C_l]``.
        relus: whether layer l is followed by a ReLU.
        skip: optional ``[C_L, C_in]``; ``skip · x`` is added to the output.

    Returns:
        Tensor ``[C_L, P]``, differentiable w.r.t. ``x``, the weights, biases and skip.
    """
    extra = () if skip is None else (skip,)
    return _ChunkedMlp.apply(x, _Columns(x.shape[1]), tuple(relus), *weights, *biases, *extra)


def context_mlp(
    flat: Tensor,
    grids: _PaddedGrids,
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    relus: Sequence[bool],
    skip: Tensor | None = None,
) -> Tensor:
    """:func:`pointwise_mlp` on the causal context of every latent, built band by band.

    Args:
        flat: float tensor, the grids flattened in raster order and concatenated ``[N]``,
            then their coarser planes ``[P · N]`` if the geometry has any.
        grids: their geometry (:func:`context_geometry`).
        skip: optional ``[C_L, C]``; ``skip · context`` is added to each output.

    Returns:
        Tensor ``[C_L, N]``, differentiable w.r.t. ``flat``, the weights, biases and skip.
    """
    extra = () if skip is None else (skip,)
    return _ChunkedMlp.apply(flat, grids, tuple(relus), *weights, *biases, *extra)


def context_geometry(
    shapes: Sequence[tuple[int, int]], n_ctx_rowcol: int, n_coarser: int = 0
) -> _PaddedGrids:
    """The padded-grid layout that :func:`context_mlp` and :func:`causal_contexts` use."""
    return _PaddedGrids(shapes, n_ctx_rowcol, n_coarser)


def causal_contexts(flat: Tensor, grids: _PaddedGrids) -> Tensor:
    """The ``[N, C]`` contexts of all latents (0 outside each grid), differentiable.

    ``flat`` is the layout's input (the latents, then any coarser planes). Training never
    builds this table (:func:`context_mlp` works band by band); it is the plain form, for
    inspection and tests.
    """
    padded = grids.pad(flat)
    return torch.cat([grids.inputs(padded, band) for band in grids.chunks()], dim=1).t()
