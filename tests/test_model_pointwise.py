"""Chunked pointwise MLPs: same values and gradients as plain autograd, reproducible."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from coolchic.model import native, pointwise
from coolchic.model.arm import ContextGather, context_index
from coolchic.model.layout import context_offsets, grid_shapes
from coolchic.model.pointwise import (
    causal_contexts,
    context_geometry,
    context_mlp,
    pointwise_mlp,
)


def _plain_mlp(
    x: torch.Tensor, weights: list[torch.Tensor], biases: list[torch.Tensor], relus: list[bool]
) -> torch.Tensor:
    for weight, bias, relu in zip(weights, biases, relus, strict=True):
        x = weight @ x + bias[:, None]
        x = torch.relu(x) if relu else x
    return x


def _layers(widths: list[int]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    generator = torch.Generator().manual_seed(sum(widths))
    weights = [
        torch.randn(out, inp, generator=generator, dtype=torch.float64).requires_grad_()
        for inp, out in itertools.pairwise(widths)
    ]
    biases = [
        torch.randn(out, generator=generator, dtype=torch.float64).requires_grad_()
        for out in widths[1:]
    ]
    return weights, biases


@pytest.fixture(params=[7, 64, 100_000], ids=["small-chunks", "chunks", "one-chunk"])
def chunk_columns(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(pointwise, "CHUNK_COLUMNS", request.param)
    return request.param


@pytest.mark.parametrize("threads", [1, 2])
def test_pointwise_matches_plain_autograd(chunk_columns: int, threads: int) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        weights, biases = _layers([5, 9, 9, 3])
        relus = [True, True, False]
        x = torch.randn(5, 50, dtype=torch.float64, requires_grad=True)
        grad_out = torch.randn(3, 50, dtype=torch.float64)
        ours = pointwise_mlp(x, weights, biases, relus)
        (ours * grad_out).sum().backward()
        ours_grads = [t.grad.clone() for t in (x, *weights, *biases)]
        for t in (x, *weights, *biases):
            t.grad = None
        plain = _plain_mlp(x, weights, biases, relus)
        (plain * grad_out).sum().backward()
        torch.testing.assert_close(ours, plain)
        for mine, reference in zip(ours_grads, (x, *weights, *biases), strict=True):
            torch.testing.assert_close(mine, reference.grad)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n_ctx_rowcol", [1, 2, 3])
def test_context_mlp_matches_plain_indexing(
    chunk_columns: int, threads: int, n_ctx_rowcol: int
) -> None:
    """Band-by-band contexts agree with the index table, in value and gradient."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        shapes = [(9, 6), (5, 3), (3, 2), (2, 1), (1, 1)]
        n_contexts = 2 * n_ctx_rowcol * (n_ctx_rowcol + 1)
        weights, biases = _layers([n_contexts, 6, 2])
        relus = [True, False]
        n_total = sum(h * w for h, w in shapes)
        flat = torch.randn(n_total, dtype=torch.float64, requires_grad=True)
        grad_out = torch.randn(2, n_total, dtype=torch.float64)
        geometry = context_geometry(shapes, n_ctx_rowcol)
        ours = context_mlp(flat, geometry, weights, biases, relus)
        (ours * grad_out).sum().backward()
        ours_grads = [t.grad.clone() for t in (flat, *weights, *biases)]
        for t in (flat, *weights, *biases):
            t.grad = None
        index = context_index(shapes, n_ctx_rowcol).long()
        contexts = F.pad(flat, (0, 1))[index]
        torch.testing.assert_close(causal_contexts(flat, geometry), contexts, rtol=0, atol=0)
        plain = _plain_mlp(contexts.t(), weights, biases, relus)
        (plain * grad_out).sum().backward()
        torch.testing.assert_close(ours, plain)
        for mine, reference in zip(ours_grads, (flat, *weights, *biases), strict=True):
            torch.testing.assert_close(mine, reference.grad)
    finally:
        torch.set_num_threads(before)


def _plain_coarser_contexts(
    grids: list[torch.Tensor], n_ctx_rowcol: int, n_coarser: int
) -> torch.Tensor:
    """The contexts written from their definition, one latent at a time: the causal
    neighbours, then the latent of grid g + p at (r >> p, c >> p), 0 past the last grid."""
    rows = []
    for g, grid in enumerate(grids):
        h, w = grid.shape
        for r, c in itertools.product(range(h), range(w)):
            values = [
                grid[r + dy, c + dx] if 0 <= r + dy < h and 0 <= c + dx < w else grid.new_zeros(())
                for dy, dx in context_offsets(n_ctx_rowcol)
            ]
            for p in range(1, n_coarser + 1):
                inside = g + p < len(grids)
                values.append(grids[g + p][r >> p, c >> p] if inside else grid.new_zeros(()))
            rows.append(torch.stack(values))
    return torch.stack(rows)


@pytest.mark.parametrize("n_coarser", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["pytorch", "kernel"])
def test_coarser_contexts_match_their_definition(
    chunk_columns: int, n_coarser: int, dtype: torch.dtype
) -> None:
    """The coarser planes read the co-located coarser latents, in value and in gradient, in
    the PyTorch form (float64) and in the C kernel (float32); odd sizes, so that the ceil
    grid sizes and the crop matter."""
    shapes = grid_shapes(13, 11, 5)
    gather = ContextGather(shapes, 2, n_coarser)
    weights, biases = _layers([12 + n_coarser, 6, 2])
    weights = [w.detach().to(dtype).requires_grad_() for w in weights]
    biases = [b.detach().to(dtype).requires_grad_() for b in biases]
    n_total = sum(h * w for h, w in shapes)
    flat = torch.randn(n_total, dtype=dtype, generator=torch.Generator().manual_seed(3))
    flat.requires_grad_()
    grad_out = torch.randn(2, n_total, dtype=dtype)
    layout_input = gather.layout_input(flat)
    ours = context_mlp(layout_input, gather.geometry, weights, biases, [True, False])
    (ours * grad_out).sum().backward()
    ours_grads = [t.grad.clone() for t in (flat, *weights, *biases)]
    for t in (flat, *weights, *biases):
        t.grad = None
    grids = [
        part.view(h, w)
        for part, (h, w) in zip(flat.split([h * w for h, w in shapes]), shapes, strict=True)
    ]
    contexts = _plain_coarser_contexts(grids, 2, n_coarser)
    assert torch.equal(gather(flat), contexts)
    plain = _plain_mlp(contexts.t(), weights, biases, [True, False])
    (plain * grad_out).sum().backward()
    tolerance = {} if dtype == torch.float64 else {"rtol": 2e-4, "atol": 2e-4}
    torch.testing.assert_close(ours, plain, **tolerance)
    for mine, reference in zip(ours_grads, (flat, *weights, *biases), strict=True):
        torch.testing.assert_close(mine, reference.grad, **tolerance)


def _skip(n_out: int, n_in: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(n_out * 100 + n_in)
    return torch.randn(n_out, n_in, generator=generator, dtype=dtype).requires_grad_()


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("last_relu", [False, True], ids=["linear-output", "relu-output"])
def test_skip_is_added_to_the_output(chunk_columns: int, threads: int, last_relu: bool) -> None:
    """``skip · x`` joins the output after its last non-linearity, in value and gradient
    (the stabilisers of Cool-chic 5), for columns and for causal contexts."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        relus = [True, last_relu]
        weights, biases = _layers([5, 7, 3])
        skip = _skip(3, 5)
        x = torch.randn(5, 60, dtype=torch.float64, requires_grad=True)
        shapes = [(9, 6), (5, 3), (3, 2)]
        grid_weights, grid_biases = _layers([12, 6, 2])
        grid_skip = _skip(2, 12)
        flat = torch.randn(sum(h * w for h, w in shapes), dtype=torch.float64)
        flat.requires_grad_()
        geometry = context_geometry(shapes, 2)
        contexts = causal_contexts(flat, geometry).t()
        cases = [
            (
                lambda: pointwise_mlp(x, weights, biases, relus, skip),
                lambda: _plain_mlp(x, weights, biases, relus) + skip @ x,
                [x, *weights, *biases, skip],
            ),
            (
                lambda: context_mlp(flat, geometry, grid_weights, grid_biases, relus, grid_skip),
                lambda: (
                    _plain_mlp(contexts, grid_weights, grid_biases, relus) + grid_skip @ contexts
                ),
                [flat, *grid_weights, *grid_biases, grid_skip],
            ),
        ]
        for ours, plain, leaves in cases:
            mine = _values_and_gradients(ours, leaves)
            reference = _values_and_gradients(plain, leaves)
            for a, b in zip(mine, reference, strict=True):
                torch.testing.assert_close(a, b)
    finally:
        torch.set_num_threads(before)


def test_two_runs_with_two_threads_are_bit_identical(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pointwise, "CHUNK_COLUMNS", 16)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        results = []
        for _ in range(3):
            weights, biases = _layers([3, 8, 2])
            weights = [w.detach().float().requires_grad_() for w in weights]
            biases = [b.detach().float().requires_grad_() for b in biases]
            x = torch.linspace(-1, 1, 3 * 300).view(3, 300).requires_grad_()
            pointwise_mlp(x, weights, biases, [True, False]).square().sum().backward()
            results.append([t.grad.clone() for t in (x, *weights, *biases)])
        for other in results[1:]:
            for a, b in zip(results[0], other, strict=True):
                assert torch.equal(a, b)
    finally:
        torch.set_num_threads(before)


def test_no_graph_is_kept_when_no_gradient_is_needed() -> None:
    weights, biases = _layers([2, 3])
    with torch.no_grad():
        out = pointwise_mlp(torch.ones(2, 5, dtype=torch.float64), weights, biases, [False])
    assert out.grad_fn is None
    torch.testing.assert_close(
        out, _plain_mlp(torch.ones(2, 5, dtype=torch.float64), weights, biases, [False]).detach()
    )


def test_workers_follow_the_callers_inference_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """The decoder runs in inference mode; its chunks on worker threads must too."""
    monkeypatch.setattr(pointwise, "CHUNK_COLUMNS", 8)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        weights, biases = _layers([3, 5, 2])
        x = torch.randn(3, 100, dtype=torch.float64)
        expected = _plain_mlp(x, weights, biases, [True, False]).detach()
        with torch.inference_mode():
            out = pointwise_mlp(x.clone(), weights, biases, [True, False])
        torch.testing.assert_close(out, expected)
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------------------------
# The C kernel (coolchic.model.native): float32 on the CPU takes it where it can be built.


def _float32_layers(widths: list[int]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    weights, biases = _layers(widths)
    return (
        [w.detach().float().requires_grad_() for w in weights],
        [b.detach().float().requires_grad_() for b in biases],
    )


def _values_and_gradients(
    run: Callable[[], torch.Tensor], leaves: list[torch.Tensor]
) -> list[torch.Tensor]:
    for leaf in leaves:
        leaf.grad = None
    out = run()
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(7))
    (out * grad_out).sum().backward()
    return [out.detach().clone(), *(leaf.grad.clone() for leaf in leaves)]


@pytest.fixture
def compiled_kernel() -> native.MlpKernel:
    found = native.kernel()
    assert found is not None, "the test machine has a C compiler: the kernel must build"
    return found


def _without_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pointwise, "kernel", lambda: None)


@pytest.mark.parametrize("threads", [1, 2])
def test_kernel_matches_the_pytorch_form(
    compiled_kernel: native.MlpKernel,
    chunk_columns: int,
    threads: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Values and every gradient agree with the PyTorch form, for both layouts, including
    widths that are not multiples of the kernel's block (33 columns, grids of odd sizes).

    Seeded: with other random values a pre-activation can sit so close to 0 that the two
    forms' rounding puts it on either side of the ReLU, and one latent's context gradient then
    differs by its whole size (seen once, in a full run where earlier tests drew other values).
    """
    torch.manual_seed(0)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        weights, biases = _float32_layers([5, 9, 9, 3])
        x = torch.randn(5, 33 * 31, requires_grad=True)
        leaves = [x, *weights, *biases]

        def columns() -> torch.Tensor:
            return pointwise_mlp(x, weights, biases, [True, True, False])

        shapes = [(37, 53), (19, 27), (10, 14), (5, 7), (3, 4), (2, 2), (1, 1)]
        grid_weights, grid_biases = _float32_layers([24, 8, 2])
        flat = torch.randn(sum(h * w for h, w in shapes), requires_grad=True)
        geometry = context_geometry(shapes, 3)
        grid_leaves = [flat, *grid_weights, *grid_biases]

        def contexts() -> torch.Tensor:
            return context_mlp(flat, geometry, grid_weights, grid_biases, [True, False])

        ours = _values_and_gradients(columns, leaves) + _values_and_gradients(contexts, grid_leaves)
        _without_kernel(monkeypatch)
        reference = _values_and_gradients(columns, leaves) + _values_and_gradients(
            contexts, grid_leaves
        )
        for mine, theirs in zip(ours, reference, strict=True):
            # float32 sums in another order: a few units in the fifth digit on sums of ~1,000 terms
            torch.testing.assert_close(mine, theirs, rtol=2e-4, atol=2e-4)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("threads", [1, 2])
def test_kernel_skip_matches_the_pytorch_form(
    compiled_kernel: native.MlpKernel,
    chunk_columns: int,
    threads: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The C kernel's skip matrix (both stabilisers) agrees with the PyTorch form: values,
    the skip's gradient and the input gradient, on both layouts."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        weights, biases = _float32_layers([7, 8, 3])
        skip = _skip(3, 7, torch.float32)
        x = torch.randn(7, 33 * 5, requires_grad=True)
        shapes = [(37, 53), (19, 27), (10, 14), (5, 7), (3, 4), (2, 2), (1, 1)]
        grid_weights, grid_biases = _float32_layers([12, 8, 2])
        grid_skip = _skip(2, 12, torch.float32)
        flat = torch.randn(sum(h * w for h, w in shapes), requires_grad=True)
        geometry = context_geometry(shapes, 2)

        def both() -> list[torch.Tensor]:
            return _values_and_gradients(
                lambda: pointwise_mlp(x, weights, biases, [True, False], skip),
                [x, *weights, *biases, skip],
            ) + _values_and_gradients(
                lambda: context_mlp(
                    flat, geometry, grid_weights, grid_biases, [True, False], grid_skip
                ),
                [flat, *grid_weights, *grid_biases, grid_skip],
            )

        ours = both()
        _without_kernel(monkeypatch)
        for mine, theirs in zip(ours, both(), strict=True):
            torch.testing.assert_close(mine, theirs, rtol=2e-4, atol=2e-4)
    finally:
        torch.set_num_threads(before)


def test_kernel_runs_are_bit_identical_on_two_threads(
    compiled_kernel: native.MlpKernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pointwise, "CHUNK_COLUMNS", 40)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        shapes = [(30, 41), (15, 21), (8, 11)]
        results = []
        for _ in range(3):
            weights, biases = _float32_layers([12, 8, 2])
            flat = torch.linspace(-3, 3, sum(h * w for h, w in shapes)).requires_grad_()
            geometry = context_geometry(shapes, 2)
            out = context_mlp(flat, geometry, weights, biases, [True, False])
            out.square().sum().backward()
            results.append([out.detach(), *(t.grad for t in (flat, *weights, *biases))])
        for other in results[1:]:
            for a, b in zip(results[0], other, strict=True):
                assert torch.equal(a, b)
    finally:
        torch.set_num_threads(before)


def test_layers_wider_than_the_kernel_take_the_pytorch_form(
    compiled_kernel: native.MlpKernel,
) -> None:
    wide = compiled_kernel.max_width + 1
    assert not compiled_kernel.fits([3, wide, 2])
    weights, biases = _float32_layers([3, wide, 2])
    x = torch.randn(3, 40)
    assert pointwise._native_kernel(x, [*weights, *biases], 2) is None
    narrow_weights, narrow_biases = _float32_layers([3, 5, 2])
    assert pointwise._native_kernel(x, [*narrow_weights, *narrow_biases], 2) is compiled_kernel
    out = pointwise_mlp(x, weights, biases, [True, False])
    torch.testing.assert_close(out, _plain_mlp(x, weights, biases, [True, False]))


def _forget_kernels() -> None:
    """Make the next :func:`native.kernel` build or load its library again."""
    native.kernel.cache_clear()
    native.library.cache_clear()


def test_kernel_is_built_once_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    _forget_kernels()
    try:
        assert native.kernel() is not None
        built = list((tmp_path / "coolchic").glob("pointwise_kernel-*.so"))
        assert len(built) == 1
        stamp = built[0].stat().st_mtime_ns
        _forget_kernels()
        assert native.kernel() is not None
        assert built[0].stat().st_mtime_ns == stamp  # loaded, not rebuilt
    finally:
        _forget_kernels()


@pytest.mark.parametrize("reason", ["no-compiler", "turned-off"])
def test_without_the_kernel_the_pytorch_form_runs(
    reason: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    if reason == "no-compiler":
        monkeypatch.setattr(native.shutil, "which", lambda _name: None)
    else:
        monkeypatch.setenv("COOLCHIC_COMPILE", "0")
    _forget_kernels()
    try:
        assert native.kernel() is None
        weights, biases = _float32_layers([4, 6, 2])
        x = torch.randn(4, 50)
        out = pointwise_mlp(x, weights, biases, [True, False])
        torch.testing.assert_close(out, _plain_mlp(x, weights, biases, [True, False]))
    finally:
        _forget_kernels()
    if reason == "no-compiler":
        assert "no C compiler" in caplog.text


@pytest.mark.parametrize("threads", [1, 2])
def test_kernel_writes_every_column_of_the_input_gradient(
    compiled_kernel: native.MlpKernel,
    chunk_columns: int,
    threads: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Columns share no input, so the kernel writes their input gradient into a buffer that
    nobody zeroed: one filled with NaN first must come back as the zero-filled one does."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        weights, biases = _float32_layers([7, 8, 3])
        x = torch.randn(7, 33 * 31 + 5, requires_grad=True)

        def gradient() -> torch.Tensor:
            return _values_and_gradients(
                lambda: pointwise_mlp(x, weights, biases, [True, False]), [x]
            )[1]

        clean = gradient()
        empty_like = torch.empty_like
        monkeypatch.setattr(torch, "empty_like", lambda t: empty_like(t).fill_(math.nan))
        poisoned = gradient()
        assert torch.equal(poisoned, clean)
    finally:
        torch.set_num_threads(before)
