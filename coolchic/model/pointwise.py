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
(``[C, H·W]``); a chunk is a column block. The ARM's contexts are gathered chunk by chunk from
the flat latents with the ``[N, C]`` :func:`coolchic.model.arm.context_index`, and their
gradient is scattered back with ``index_add_``.

Each output column depends only on its own input column, and the weight gradients are summed
over the chunks in a fixed order: results do not depend on the chunking beyond float rounding,
and a seeded run is reproducible.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["CHUNK_COLUMNS", "gathered_mlp", "pointwise_mlp"]

#: Columns per chunk: a 24-wide float32 hidden layer of 8,192 columns is 768 KB, which stays
#: in a core's L2 cache with its neighbours (measured fastest among 4k-64k here).
CHUNK_COLUMNS = 16384


class _Workers:
    """Chunks spread over ``torch.get_num_threads()`` threads, each running torch single-threaded.

    The per-chunk operators are too small for torch's own intra-op threads to pay (gathers and
    ``index_add_`` run on one thread, small matrix products scale poorly), while whole chunks
    on separate threads scale almost linearly (1.7x on two cores for the ARM, measured). Worker
    k always takes chunks k, k + T, k + 2T, …, and sums that are shared between chunks are
    kept per worker and added in worker order: a run is reproducible for a given thread count.
    """

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._size = 0
        self._lock = threading.Lock()

    def map(self, n_columns: int, job: Callable[[int, slice], None]) -> int:
        """Run ``job(worker, chunk)`` over every chunk; returns the number of workers used."""
        chunks = [
            slice(start, min(start + CHUNK_COLUMNS, n_columns))
            for start in range(0, n_columns, CHUNK_COLUMNS)
        ]
        size = max(1, min(torch.get_num_threads(), len(chunks)))
        if size == 1:
            for chunk in chunks:
                job(0, chunk)
            return 1

        def run(worker: int) -> None:
            # Grad mode is per thread: the caller's (off inside an autograd Function) does not
            # reach the workers, which would otherwise record a graph of every chunk.
            with torch.no_grad():
                for chunk in chunks[worker::size]:
                    job(worker, chunk)

        for future in [self._executor(size).submit(run, k) for k in range(size)]:
            future.result()
        return size

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


_WORKERS = _Workers()


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
    """Weight and bias gradients, one accumulator per worker, summed in worker order."""

    def __init__(self, weights: Sequence[Tensor], biases: Sequence[Tensor]) -> None:
        n = torch.get_num_threads()
        self.weights = [[torch.zeros_like(w) for w in weights] for _ in range(n)]
        self.biases = [[torch.zeros_like(b) for b in biases] for _ in range(n)]

    def backward_chunk(
        self,
        worker: int,
        grad: Tensor,
        activations: list[Tensor],
        weights: Sequence[Tensor],
        relus: Sequence[bool],
    ) -> Tensor:
        """Back-propagate one chunk into worker ``worker``'s accumulators.

        Returns:
            The gradient of the first layer's pre-activation, ``[C_1, n]``; the input gradient
            is ``W_1ᵀ`` times it, left to the caller to form in the layout it needs.
        """
        grad_weights, grad_biases = self.weights[worker], self.biases[worker]
        for layer in range(len(weights) - 1, -1, -1):
            if relus[layer]:
                grad = torch.ops.aten.threshold_backward(grad, activations[layer + 1], 0.0)
            grad_weights[layer].addmm_(grad, activations[layer].t())
            grad_biases[layer].add_(grad.sum(dim=1))
            if layer:
                grad = weights[layer].t() @ grad
        return grad

    def totals(self, n_workers: int) -> list[Tensor]:
        """Weight gradients then bias gradients, summed over the first ``n_workers``."""
        summed = []
        for per_worker in (self.weights, self.biases):
            for layer in range(len(per_worker[0])):
                total = per_worker[0][layer]
                for worker in range(1, n_workers):
                    total = total + per_worker[worker][layer]
                summed.append(total)
        return summed


def _split(params: Sequence[Tensor], relus: Sequence[bool]) -> tuple[list[Tensor], list[Tensor]]:
    """The flat ``(*weights, *biases)`` argument list of the Functions, split."""
    return list(params[: len(relus)]), list(params[len(relus) :])


class _PointwiseMlp(torch.autograd.Function):
    """``[C_in, P]`` → ``[C_out, P]``; see :func:`pointwise_mlp`."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        x: Tensor,
        relus: tuple[bool, ...],
        *params: Tensor,
    ) -> Tensor:
        weights, biases = _split(params, relus)
        out = x.new_empty(weights[-1].shape[0], x.shape[1])

        def job(_worker: int, columns: slice) -> None:
            out[:, columns] = _forward_chunk(x[:, columns], weights, biases, relus)[-1]

        _WORKERS.map(x.shape[1], job)
        ctx.save_for_backward(x, *params)
        ctx.relus = relus  # type: ignore[attr-defined]
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad_out: Tensor
    ) -> tuple[Tensor | None, ...]:
        relus: tuple[bool, ...] = ctx.relus  # type: ignore[attr-defined]
        x, *params = ctx.saved_tensors  # type: ignore[attr-defined]
        weights, biases = _split(params, relus)
        gradients = _Gradients(weights, biases)
        grad_x = torch.empty_like(x) if ctx.needs_input_grad[0] else None  # type: ignore[attr-defined]

        def job(worker: int, columns: slice) -> None:
            activations = _forward_chunk(x[:, columns], weights, biases, relus)
            grad = gradients.backward_chunk(
                worker, grad_out[:, columns], activations, weights, relus
            )
            if grad_x is not None:
                grad_x[:, columns] = weights[0].t() @ grad

        n_workers = _WORKERS.map(x.shape[1], job)
        return (grad_x, None, *gradients.totals(n_workers))


def _gather(padded: Tensor, index: Tensor) -> Tensor:
    """``padded[index]`` for a contiguous ``[n, C]`` index, returned as a ``[C, n]`` view."""
    return padded.index_select(0, index.view(-1)).view(index.shape).t()


class _GatheredMlp(torch.autograd.Function):
    """``flat[index]`` (``[P, C_in]``, gathered per chunk) → ``[C_out, P]``."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        flat: Tensor,
        index: Tensor,
        relus: tuple[bool, ...],
        *params: Tensor,
    ) -> Tensor:
        weights, biases = _split(params, relus)
        padded = F.pad(flat, (0, 1))  # the last slot is the zero of out-of-grid neighbours
        out = flat.new_empty(weights[-1].shape[0], index.shape[0])

        def job(_worker: int, rows: slice) -> None:
            x = _gather(padded, index[rows])
            out[:, rows] = _forward_chunk(x, weights, biases, relus)[-1]

        _WORKERS.map(index.shape[0], job)
        ctx.save_for_backward(padded, index, *params)
        ctx.relus = relus  # type: ignore[attr-defined]
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad_out: Tensor
    ) -> tuple[Tensor | None, ...]:
        relus: tuple[bool, ...] = ctx.relus  # type: ignore[attr-defined]
        padded, index, *params = ctx.saved_tensors  # type: ignore[attr-defined]
        weights, biases = _split(params, relus)
        gradients = _Gradients(weights, biases)
        need_flat = ctx.needs_input_grad[0]  # type: ignore[attr-defined]
        # Chunks scatter into overlapping positions: one accumulator per worker.
        grad_padded = [
            torch.zeros_like(padded) if need_flat else None for _ in range(torch.get_num_threads())
        ]

        def job(worker: int, rows: slice) -> None:
            chunk_index = index[rows]
            activations = _forward_chunk(_gather(padded, chunk_index), weights, biases, relus)
            grad = gradients.backward_chunk(worker, grad_out[:, rows], activations, weights, relus)
            target = grad_padded[worker]
            if target is not None:
                grad_rows = grad.t() @ weights[0]  # [n, C_in], the index's layout
                target.index_add_(0, chunk_index.view(-1), grad_rows.view(-1))

        n_workers = _WORKERS.map(index.shape[0], job)
        grad_flat = None
        if need_flat:
            total = grad_padded[0]
            for worker in range(1, n_workers):
                total = total + grad_padded[worker]  # type: ignore[operator]
            grad_flat = total[:-1]  # type: ignore[index]
        return (grad_flat, None, None, *gradients.totals(n_workers))


def pointwise_mlp(
    x: Tensor, weights: Sequence[Tensor], biases: Sequence[Tensor], relus: Sequence[bool]
) -> Tensor:
    """The same MLP on every column of ``x``, chunked, activations recomputed in the backward.

    Args:
        x: float tensor ``[C_in, P]`` (rows may be strided; each column is one input).
        weights: ``W_l`` of shape ``[C_l, C_{l-1}]``, first layer first.
        biases: ``b_l`` of shape ``[C_l]``.
        relus: whether layer l is followed by a ReLU.

    Returns:
        Tensor ``[C_L, P]``, differentiable w.r.t. ``x``, the weights and the biases.
    """
    return _PointwiseMlp.apply(x, tuple(relus), *weights, *biases)


def gathered_mlp(
    flat: Tensor,
    index: Tensor,
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    relus: Sequence[bool],
) -> Tensor:
    """:func:`pointwise_mlp` on columns gathered from a flat vector.

    Args:
        flat: float tensor ``[N]``.
        index: contiguous integer tensor ``[P, C_in]`` of positions in ``flat``, where ``N``
            stands for a zero (an out-of-grid neighbour).

    Returns:
        Tensor ``[C_L, P]``, differentiable w.r.t. ``flat``, the weights and the biases.
    """
    return _GatheredMlp.apply(flat, index, tuple(relus), *weights, *biases)
