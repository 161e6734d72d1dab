"""Compiled element-wise chains: same values and gradients as eager, and a safe fallback."""

from __future__ import annotations

import logging

import pytest
import torch

from coolchic.model import fused
from coolchic.model.arm import (
    ContextGather,
    InterFeatureContext,
    _with_context_planes,
    rate_from_raw,
)
from coolchic.model.fused import fusable
from coolchic.model.latents import grid_shapes
from coolchic.model.layout import coded_grid_shapes, grid_resolutions, ifce_sources
from coolchic.model.quantizer import _noisy_softround
from coolchic.model.upsampling import Upsampling, _separable_stack


def _values_and_gradients(
    function: fused._Fusable, inputs: list[torch.Tensor], force: bool, *constants: object
) -> list[torch.Tensor]:
    for tensor in inputs:
        tensor.grad = None
    out = function(*inputs, *constants, force_compile=force)
    weight = torch.linspace(-1.0, 1.0, out.numel()).view(out.shape)
    (out * weight).sum().backward()
    return [out.detach(), *(tensor.grad.clone() for tensor in inputs)]


def _assert_compiled_equals_eager(
    function: fused._Fusable, inputs: list[torch.Tensor], *constants: object
) -> None:
    eager = _values_and_gradients(function, inputs, False, *constants)
    compiled = _values_and_gradients(function, inputs, True, *constants)
    again = _values_and_gradients(function, inputs, True, *constants)
    for a, b, c in zip(eager, compiled, again, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)
        assert torch.equal(b, c)  # the compiled kernel is deterministic


def test_rate_compiled_equals_eager() -> None:
    generator = torch.Generator().manual_seed(0)
    y = (3 * torch.randn(500, generator=generator)).requires_grad_()
    mu = torch.randn(500, generator=generator).requires_grad_()
    raw = (4 + 2 * torch.randn(500, generator=generator)).requires_grad_()
    _assert_compiled_equals_eager(rate_from_raw, [y, mu, raw])


def test_noisy_softround_compiled_equals_eager() -> None:
    generator = torch.Generator().manual_seed(1)
    x = (5 * torch.randn(400, generator=generator)).requires_grad_()
    noise = 0.2 * torch.randn(400, generator=generator)
    temperature = torch.tensor(0.3)
    eager = _noisy_softround(x, noise, temperature)
    compiled = _noisy_softround(x, noise, temperature, force_compile=True)
    torch.testing.assert_close(compiled, eager)
    # Another temperature reuses the kernel (a tensor argument, not a constant).
    other = _noisy_softround(x, noise, torch.tensor(0.1), force_compile=True)
    torch.testing.assert_close(other, _noisy_softround(x, noise, torch.tensor(0.1)))


def test_upsampling_stack_compiled_equals_eager() -> None:
    torch.manual_seed(0)
    up = Upsampling(5, kernel=8, preconcat_kernel=7)
    with torch.no_grad():
        up.transposed_half.add_(0.1 * torch.randn_like(up.transposed_half))
        assert up.preconcat_half is not None
        up.preconcat_half.add_(0.1 * torch.randn_like(up.preconcat_half))
    grids = [torch.randn(1, 1, h, w, requires_grad=True) for h, w in grid_shapes(37, 29, 5)]
    taps = up.transposed_half[:, up._taps_index].detach().requires_grad_()
    preconcat = up.preconcat_half[:, up._preconcat_index].detach().requires_grad_()
    inputs = [grids[0], *grids[1:], taps, preconcat]

    def stack(finest: torch.Tensor, *rest: torch.Tensor, force_compile: bool) -> torch.Tensor:
        *coarser, taps, preconcat = rest
        return _separable_stack(
            finest, list(coarser), taps, preconcat, up._poly, force_compile=force_compile
        )

    _assert_compiled_equals_eager(stack, inputs)  # type: ignore[arg-type]


def test_a_failing_compiler_falls_back_to_eager(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_compile(function: object, **_: object) -> object:
        def fail(*_args: object) -> None:
            raise RuntimeError("no C++ compiler found")

        return fail

    monkeypatch.setattr(torch, "compile", broken_compile)

    @fusable
    def double(x: torch.Tensor) -> torch.Tensor:
        return 2 * x

    with caplog.at_level(logging.WARNING, logger="coolchic.model.fused"):
        assert torch.equal(double(torch.ones(3), force_compile=True), torch.full((3,), 2.0))
        assert torch.equal(double(torch.ones(3), force_compile=True), torch.full((3,), 2.0))
    warnings = [r for r in caplog.records if "could not compile double" in r.getMessage()]
    assert len(warnings) == 1  # said once, then eager for good


def test_small_or_gradient_free_inputs_stay_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    monkeypatch.setattr(torch, "compile", lambda function, **_: calls.append(function) or function)

    @fusable
    def square(x: torch.Tensor) -> torch.Tensor:
        return x * x

    square(torch.ones(10, requires_grad=True))
    assert calls == []
    assert fused.FUSE_MIN_ELEMENTS < fused.FUSE_MIN_ELEMENTS_FIXED_INPUT
    fixed = torch.ones(fused.FUSE_MIN_ELEMENTS)
    square(fixed)  # not differentiated (the networks-only phase): a higher threshold
    assert calls == []
    large = fixed.clone().requires_grad_()
    with torch.no_grad():  # evaluations
        square(large)
    assert calls == []
    square(large)
    assert len(calls) == 1
    square(torch.ones(fused.FUSE_MIN_ELEMENTS_FIXED_INPUT))
    assert len(calls) == 1  # the same compiled function serves both


def test_compilation_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COOLCHIC_COMPILE", "0")
    monkeypatch.setattr(torch, "compile", lambda *_a, **_k: pytest.fail("compiled"))

    @fusable
    def negate(x: torch.Tensor) -> torch.Tensor:
        return -x

    assert torch.equal(negate(torch.ones(2), force_compile=True), -torch.ones(2))


def test_context_planes_with_the_inter_feature_context_compiled_equal_eager() -> None:
    """The layout input (latents, then the IFCE's rounded features): values, the latents'
    gradient and the feature maps' gradients."""
    shapes = coded_grid_shapes(37, 29, 5, 2)
    gather = ContextGather(shapes, 2, n_coarser=2)
    ifce = InterFeatureContext(grid_resolutions(5, 2), ifce_sources(5, 2), 2)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for parameter in ifce.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    flat = (4 * torch.randn(gather.n_total, generator=generator)).requires_grad_()
    leaves = [flat, *ifce.parameters()]

    def run(force: bool) -> list[torch.Tensor]:
        for leaf in leaves:
            leaf.grad = None
        out = _with_context_planes(flat, gather, ifce, force_compile=force)
        weight = torch.linspace(-1.0, 1.0, out.numel())
        (out * weight).sum().backward()
        return [out.detach(), *(leaf.grad.clone() for leaf in leaves)]

    for eager, compiled in zip(run(False), run(True), strict=True):
        torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)
