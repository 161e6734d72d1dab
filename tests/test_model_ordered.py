"""Sums over pixels whose rounding does not depend on the thread count."""

from __future__ import annotations

import pytest
import torch

from coolchic.model import ordered, upsampling
from coolchic.model.ordered import affine_columns, ordered_sum, repeat_lines, repeat_rows, sum_rows


def _with_threads(threads: int, function):  # type: ignore[no-untyped-def]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return function()
    finally:
        torch.set_num_threads(before)


def test_sum_rows_and_ordered_sum_agree_with_torch_and_ignore_the_threads() -> None:
    generator = torch.Generator().manual_seed(0)
    rows = torch.randn(3000, 40, generator=generator)
    x = torch.randn(5, 70_001, generator=generator)
    torch.testing.assert_close(sum_rows(rows), rows.sum(dim=0), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(ordered_sum(x), x.sum(), rtol=1e-5, atol=1e-3)
    for threads in (2, 3):
        assert torch.equal(_with_threads(threads, lambda: sum_rows(rows)), sum_rows(rows))
        assert torch.equal(_with_threads(threads, lambda: ordered_sum(x)), ordered_sum(x))


def test_ordered_sum_gradient_is_ones() -> None:
    x = torch.randn(3, 2050, requires_grad=True)
    ordered_sum(x * 2.0).backward()
    assert x.grad is not None
    torch.testing.assert_close(x.grad, torch.full_like(x, 2.0))


@pytest.mark.parametrize("bias", [True, False])
def test_affine_columns_matches_addmm_with_its_gradients(
    monkeypatch: pytest.MonkeyPatch, bias: bool
) -> None:
    monkeypatch.setattr(ordered, "BLOCK_COLUMNS", 64)  # several blocks
    generator = torch.Generator().manual_seed(1)
    n = 300
    start = torch.randn(3 if bias else (3, n), generator=generator, dtype=torch.float64)
    weight = torch.randn(3, 5, generator=generator, dtype=torch.float64)
    values = torch.randn(5, n, generator=generator, dtype=torch.float64)
    inputs = tuple(t.requires_grad_() for t in (start, weight, values))
    torch.autograd.gradcheck(affine_columns, inputs)
    plain = torch.addmm(start[:, None] if bias else start, weight, values)
    torch.testing.assert_close(affine_columns(*inputs), plain)


def test_affine_columns_gradient_ignores_the_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ordered, "BLOCK_COLUMNS", 1000)
    generator = torch.Generator().manual_seed(2)
    weight = torch.randn(2, 9, generator=generator)
    values = torch.randn(9, 50_000, generator=generator)
    grad = torch.randn(2, 50_000, generator=generator)

    def gradients() -> list[torch.Tensor]:
        bias = torch.zeros(2, requires_grad=True)
        w = weight.clone().requires_grad_()
        v = values.clone().requires_grad_()
        affine_columns(bias, w, v).backward(grad)
        return [t.grad for t in (bias, w, v)]  # type: ignore[misc]

    one = _with_threads(1, gradients)
    for threads in (2, 3):
        for a, b in zip(one, _with_threads(threads, gradients), strict=True):
            assert torch.equal(a, b)


def test_repeat_lines_and_rows_copy_and_sum_back() -> None:
    taps = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda t: repeat_lines(t, 7), (taps,))
    assert torch.equal(repeat_lines(taps, 3)[2], taps)
    rows = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda r: repeat_rows(r, [2, 1, 4]), (rows,))
    assert torch.equal(repeat_rows(rows, [2, 1, 4])[3], rows[2])


@pytest.mark.parametrize("lines_min", [0, 10_000])  # per row, per sample
@pytest.mark.parametrize("dim", [-1, -2])
def test_compiled_taps_act_as_the_taps(
    monkeypatch: pytest.MonkeyPatch, lines_min: int, dim: int
) -> None:
    monkeypatch.setattr(upsampling, "PER_LINE_MIN_LINES", lines_min)
    taps = torch.randn(4, 2, requires_grad=True)
    x = torch.randn(3, 1, 9, 11)
    padded = torch.nn.functional.pad(x, (2, 1) if dim == -1 else (0, 0, 2, 1))
    coefficients = upsampling._compiled_taps(taps, x)
    shifted = padded.narrow(dim, 1, x.shape[dim])
    total = sum((coefficients[j, r] * shifted).sum() for j in range(4) for r in range(2))
    total.backward()
    assert taps.grad is not None
    torch.testing.assert_close(taps.grad, torch.full_like(taps, float(shifted.sum())))
