"""Sums over pixels whose rounding does not depend on the number of threads.

PyTorch, MKL and compiled kernels split a large reduction between their threads and add the
partial sums at the end, so a gradient summed over a frame's pixels rounds differently with one
thread and with two, and a seeded encode drifts apart within a few steps. The training step
takes every such sum from here (:mod:`coolchic.model.pointwise` and
:mod:`coolchic.model.upsampling` use the pool and :func:`sum_rows` too): work is cut into
chunks that do not depend on the threads, each chunk is computed by one thread, and the partial
sums are added in chunk order. A seeded encode then writes the same bits at any thread count.

Two operators stay opaque to ``torch.compile`` (``torch.library`` custom operators), so that
compiled graphs reduce over pixels only through them:

- :func:`repeat_rows` (and :func:`repeat_lines`): small tensors repeated once per line of a
  map. A filter tap read through it gets one gradient per line (a short sum, which each
  compiled kernel keeps on one thread), added over the lines here.
- :func:`affine_columns`: ``start + weight @ values`` for a few output rows and many
  columns, with the weight gradient (and a bias ``start``'s) summed over fixed blocks of
  columns.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
from torch import Tensor

__all__ = [
    "WORKERS",
    "affine_columns",
    "one_thread",
    "ordered_sum",
    "repeat_lines",
    "repeat_rows",
    "sum_rows",
]

#: PyTorch reduces fewer elements than this on one thread (``at::internal::GRAIN_SIZE``); a
#: larger reduction is split between its threads, and the rounding then depends on their number.
SERIAL_REDUCTION = 32768

#: Columns per block of :func:`affine_columns`' weight gradient.
BLOCK_COLUMNS = 16384

_Chunk = TypeVar("_Chunk")


class _Workers:
    """Chunks spread over ``torch.get_num_threads()`` threads, each running torch single-threaded.

    Small per-chunk operators gain nothing from torch's own intra-op threads (gathers and
    ``index_add_`` run on one thread, small matrix products scale poorly), while whole chunks
    on separate threads scale almost linearly (1.7x on two cores for the ARM, measured). A free
    thread takes the next chunk. A chunk's result does not depend on which thread computed it
    (all run torch on one thread), so callers keep shared sums per chunk.
    """

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._size = 0
        self._lock = threading.Lock()

    def map(
        self, chunks: Sequence[_Chunk], job: Callable[[_Chunk], None], *, torch_ops: bool = True
    ) -> None:
        """Run ``job(chunk)`` for every chunk.

        A job that runs no torch operator (``torch_ops=False``: it only calls the C kernel)
        runs on the calling thread when it is the only one: torch's thread count cannot
        change its result, and the hand-over to a worker would cost more than a small chunk.
        """
        threads = torch.get_num_threads()
        if threads == 1 or (not torch_ops and len(chunks) == 1):
            for chunk in chunks:
                job(chunk)
            return

        # Grad and inference modes are per thread: the caller's do not reach the workers,
        # which would otherwise record a graph of every chunk (grad mode is off inside an
        # autograd Function) or be refused writes into the caller's inference tensors.
        inference = torch.is_inference_mode_enabled()
        taken = itertools.count()
        lock = threading.Lock()

        def run() -> None:
            with torch.inference_mode(inference), torch.no_grad():
                while True:
                    with lock:
                        index = next(taken)
                    if index >= len(chunks):
                        return
                    job(chunks[index])

        pool = self._executor(threads)
        for future in [pool.submit(run) for _ in range(min(threads, len(chunks)))]:
            future.result()

    def _executor(self, size: int) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None or self._size != size:
                if self._pool is not None:
                    self._pool.shutdown(wait=True)
                self._pool = ThreadPoolExecutor(
                    size,
                    thread_name_prefix="coolchic-chunk",
                    initializer=torch.set_num_threads,
                    initargs=(1,),
                )
                self._size = size
            return self._pool


#: The one pool of chunk workers.
WORKERS = _Workers()


@contextmanager
def one_thread() -> Iterator[None]:
    """Torch runs on this thread alone inside the block (as it does on the workers).

    For small sums over pixels: a matrix product or a reduction on one thread adds in an order
    set by the shapes alone, where with more threads its sum would be split between them. One
    product on one thread is also faster than the per-element products it replaces (about 8x
    for the taps' gradient of a small upsampling pass), and switching costs well under 1 µs.
    """
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def sum_rows(rows: Tensor) -> Tensor:
    """``rows.sum(dim=0)`` of a 2-D tensor, rounded the same at any thread count.

    Blocks of rows small enough for PyTorch to reduce on one thread, then the blocks' sums.
    The blocks are reduced by one operator with one output per (block, column): PyTorch
    splits such a reduction between threads by outputs, so each output's sum runs whole on
    one thread, in an order set by the shapes alone. A single output (one column) would be
    split along its sum, so one column goes block by block.
    """
    n_rows, n_columns = rows.shape
    block = max(1, SERIAL_REDUCTION // max(1, n_columns))
    if n_rows <= block:
        return rows.sum(dim=0)
    if n_columns == 1:
        total = rows[:block].sum(dim=0)
        for start in range(block, n_rows, block):
            total += rows[start : start + block].sum(dim=0)
        return total
    whole = n_rows - n_rows % block
    partial = rows[:whole].unflatten(0, (whole // block, block)).sum(dim=1)  # [blocks, D]
    if whole < n_rows:
        partial = torch.cat([partial, rows[whole:].sum(dim=0, keepdim=True)])
    return sum_rows(partial)


#: Values per row of :func:`ordered_sum`'s blocks.
_ROW = 1024


class _OrderedSum(torch.autograd.Function):
    """``x.sum()`` by :func:`sum_rows` over rows of ``_ROW`` values; the gradient is ``x``'s
    shape filled with the output's (autograd through the row blocks would write a zeroed copy
    of ``x`` per block)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.shape = x.shape
        flat = x.reshape(-1)
        whole = flat.numel() - flat.numel() % _ROW
        total = flat[whole:].sum()
        if whole:
            total = sum_rows(flat[:whole].view(-1, _ROW)).sum() + total
        return total

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # type: ignore[override]
        return grad.expand(ctx.shape)


def ordered_sum(x: Tensor) -> Tensor:
    """``x.sum()``, rounded the same at any thread count (differentiable)."""
    return _OrderedSum.apply(x)


@torch.library.custom_op("coolchic::repeat_rows", mutates_args=())
def repeat_rows(values: Tensor, counts: list[int]) -> Tensor:
    """Row i of ``values`` (``[M, D]``) repeated ``counts[i]`` times: ``[Σ counts, D]``."""
    return torch.repeat_interleave(values, torch.tensor(counts), dim=0, output_size=sum(counts))


@repeat_rows.register_fake
def _(values: Tensor, counts: list[int]) -> Tensor:
    return values.new_empty(sum(counts), values.shape[1])


@torch.library.custom_op("coolchic::sum_row_groups", mutates_args=())
def sum_row_groups(grad: Tensor, counts: list[int]) -> Tensor:
    """The adjoint of :func:`repeat_rows`: each group of rows summed in order, ``[M, D]``."""
    sums = []
    start = 0
    for count in counts:
        sums.append(sum_rows(grad[start : start + count]))
        start += count
    return torch.stack(sums)


@sum_row_groups.register_fake
def _(grad: Tensor, counts: list[int]) -> Tensor:
    return grad.new_empty(len(counts), grad.shape[1])


def _repeat_rows_backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
    return sum_row_groups(grad.contiguous(), ctx.counts), None


def _repeat_rows_setup(ctx: Any, inputs: tuple[Tensor, list[int]], output: Tensor) -> None:
    ctx.counts = inputs[1]


repeat_rows.register_autograd(_repeat_rows_backward, setup_context=_repeat_rows_setup)


def repeat_lines(values: Tensor, lines: int) -> Tensor:
    """``values`` repeated ``lines`` times along a new first dimension (a new tensor), its
    gradient summed over the copies in order."""
    return repeat_rows(values.reshape(1, -1), [lines]).view(lines, *values.shape)


def _blocks(n_columns: int) -> list[slice]:
    return [
        slice(start, min(start + BLOCK_COLUMNS, n_columns))
        for start in range(0, n_columns, BLOCK_COLUMNS)
    ]


def _affine(start: Tensor, weight: Tensor, values: Tensor) -> Tensor:
    return torch.addmm(start[:, None] if start.dim() == 1 else start, weight, values)


def _weighted_rows(weight: Tensor, grad: Tensor) -> Tensor:
    """``weightᵀ @ grad`` as one multiply and one add per output row of ``weight``, in order.

    MKL picks its kernel by the thread count for some shapes: on an AVX2 host (Zen 2) a
    ``[7 or 9, C] @ [C, N]`` product rounded differently on one thread and on two, though no
    column's sum is split. Element-wise products and sums round the same on any thread.
    """
    total = weight[0, :, None] * grad[0]
    for row in range(1, weight.shape[0]):
        total += weight[row, :, None] * grad[row]
    return total


def _affine_gradients(
    grad: Tensor, weight: Tensor, values: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Column sums of ``grad`` (a bias's gradient), ``grad @ valuesᵀ`` (the weight's) and
    ``weightᵀ @ grad`` (the values'), the sums over columns added in a fixed order.

    Up to :data:`BLOCK_COLUMNS` columns, one sum and one product on one thread
    (:func:`one_thread`); above, one small product per block of columns on the workers. The
    values' gradient is :func:`_weighted_rows`, not a BLAS product.
    """
    n_out, n_in = weight.shape
    if values.shape[1] <= BLOCK_COLUMNS:
        with one_thread():
            return grad.sum(dim=1), grad @ values.t(), _weighted_rows(weight, grad)
    blocks = _blocks(values.shape[1])
    per_block = grad.new_empty(len(blocks), n_out * (1 + n_in))
    grad_values = values.new_empty(values.shape)

    def job(index: int) -> None:
        block = blocks[index]
        block_grad = grad[:, block]
        row = per_block[index].view(n_out, 1 + n_in)
        row[:, 0] = block_grad.sum(dim=1)
        row[:, 1:] = block_grad @ values[:, block].t()
        grad_values[:, block] = _weighted_rows(weight, block_grad)

    WORKERS.map(range(len(blocks)), job)
    total = sum_rows(per_block).view(n_out, 1 + n_in)
    return total[:, 0].clone(), total[:, 1:].clone(), grad_values


def affine_columns(start: Tensor, weight: Tensor, values: Tensor) -> Tensor:
    """``start + weight @ values``: ``[C, K]`` times ``[K, N]`` → ``[C, N]``, from a bias
    ``[C]`` (added to every column) or a ``[C, N]`` tensor.

    The product is one ``addmm``: threads split its N columns, never a column's K-long sum.
    The weight's (and a bias's) gradient sums over the N columns: see
    :func:`_affine_gradients`. Eagerly this is an autograd Function; under ``torch.compile``
    a custom operator with the same arithmetic, which the compiled graph calls as it is (a
    custom operator's dispatch costs tens of microseconds more a call).
    """
    if torch.compiler.is_compiling():
        return _affine_columns_op(start, weight, values)
    return _AffineColumns.apply(start, weight, values)


class _AffineColumns(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, start: Tensor, weight: Tensor, values: Tensor) -> Tensor:  # type: ignore[override]
        ctx.start_is_bias = start.dim() == 1
        ctx.save_for_backward(weight, values)
        return _affine(start, weight, values)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # type: ignore[override]
        return _affine_backward(ctx, grad)


@torch.library.custom_op("coolchic::affine_columns", mutates_args=())
def _affine_columns_op(start: Tensor, weight: Tensor, values: Tensor) -> Tensor:
    """:func:`affine_columns` as a custom operator, for compiled graphs."""
    return _affine(start, weight, values)


@_affine_columns_op.register_fake
def _(start: Tensor, weight: Tensor, values: Tensor) -> Tensor:
    return values.new_empty(weight.shape[0], values.shape[1])


@torch.library.custom_op("coolchic::affine_columns_backward", mutates_args=())
def affine_columns_backward(
    grad: Tensor, weight: Tensor, values: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`_affine_gradients` as a custom operator, for compiled graphs."""
    return _affine_gradients(grad, weight, values)


@affine_columns_backward.register_fake
def _(grad: Tensor, weight: Tensor, values: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    n_out, n_in = weight.shape
    return grad.new_empty(n_out), grad.new_empty(n_out, n_in), values.new_empty(values.shape)


def _affine_setup(ctx: Any, inputs: tuple[Tensor, Tensor, Tensor], output: Tensor) -> None:
    start, weight, values = inputs
    ctx.start_is_bias = start.dim() == 1
    ctx.save_for_backward(weight, values)


def _affine_backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    weight, values = ctx.saved_tensors
    gradients = affine_columns_backward if torch.compiler.is_compiling() else _affine_gradients
    column_sums, grad_weight, grad_values = gradients(
        grad.contiguous(), weight.contiguous(), values.contiguous()
    )
    return column_sums if ctx.start_is_bias else grad, grad_weight, grad_values


_affine_columns_op.register_autograd(_affine_backward, setup_context=_affine_setup)
