"""Chunked pointwise MLPs: same values and gradients as plain autograd, reproducible."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from coolchic.model import pointwise
from coolchic.model.arm import context_index
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
