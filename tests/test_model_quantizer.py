"""Training-time quantisation proxies."""

from __future__ import annotations

import math

import pytest
import torch

from coolchic.model import native, quantizer
from coolchic.model.ordered import one_thread
from coolchic.model.quantizer import (
    INFERENCE,
    V2_NOISE_GRADIENT_SCALE,
    QuantizerSettings,
    gaussian_noise,
    kumaraswamy_noise,
    quantize,
    sample_noise,
    softround,
)


def _latents(n: int = 2000, seed: int = 0) -> torch.Tensor:
    return (torch.rand(n, generator=torch.Generator().manual_seed(seed)) - 0.5) * 20


@pytest.mark.parametrize("kind", ["ste", "ste_v2", "hardround"])
def test_rounding_kinds_forward_exact_integers(kind: str) -> None:
    x = _latents()
    y = quantize(x, kind=kind, temperature=0.3)  # type: ignore[arg-type]
    assert torch.equal(y, torch.round(x))


def test_hardround_has_no_gradient_path() -> None:
    x = _latents().requires_grad_()
    y = quantize(x, kind="hardround")
    assert not y.requires_grad
    assert INFERENCE.kind == "hardround" and INFERENCE.is_rounding


def test_ste_backward_is_the_softround_derivative() -> None:
    x = _latents(50).requires_grad_()
    t = 0.3
    quantize(x, kind="ste", temperature=t).sum().backward()
    x2 = x.detach().clone().requires_grad_()
    softround(x2, t).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)


def test_v2_gradient_factors() -> None:
    x = _latents(50).requires_grad_()
    quantize(x, kind="ste_v2", ste_derivative=0.01).sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 0.01))
    x.grad = None
    y = quantize(x, kind="noise_v2")
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, V2_NOISE_GRADIENT_SCALE))
    assert torch.all((y - x).abs() <= 0.5 + 1e-5)


def test_softround_limits() -> None:
    x = _latents()
    away_from_half = (x - torch.floor(x) - 0.5).abs() > 0.05
    torch.testing.assert_close(softround(x, 1e-3)[away_from_half], torch.round(x)[away_from_half])
    torch.testing.assert_close(softround(x, 1e3), x, rtol=0, atol=1e-4)
    # Exact at integers and half-integers, monotone in between.
    points = torch.tensor([-2.0, -1.5, 0.0, 0.5, 3.0])
    torch.testing.assert_close(softround(points, 0.3), points)
    grid = torch.linspace(-3, 3, 601)
    assert torch.all(torch.diff(softround(grid, 0.2)) >= 0)


def test_softround_accepts_a_tensor_temperature() -> None:
    x = _latents(100)
    torch.testing.assert_close(softround(x, torch.tensor(0.25)), softround(x, 0.25))


def test_kumaraswamy_noise_range_and_shape() -> None:
    gen = torch.Generator().manual_seed(0)
    uniform = kumaraswamy_noise((200_000,), 1.0, generator=gen)
    assert uniform.min() >= -0.5 and uniform.max() < 0.5
    assert uniform.mean().item() == pytest.approx(0.0, abs=0.005)
    assert uniform.var().item() == pytest.approx(1 / 12, rel=0.02)
    peaky = kumaraswamy_noise((200_000,), 3.0, generator=gen)
    assert peaky.min() >= -0.5 and peaky.max() < 0.5
    assert peaky.var().item() < 0.5 * uniform.var().item()
    # Mode at 0: the central bin is the most populated.
    counts = torch.histc(peaky, bins=11, min=-0.5, max=0.5)
    assert counts.argmax().item() == 5
    with pytest.raises(ValueError, match="kumaraswamy"):
        kumaraswamy_noise((3,), 0.5)


def test_gaussian_and_uniform_noise() -> None:
    x = torch.zeros(100_000)
    gen = torch.Generator().manual_seed(0)
    gauss = sample_noise(x, noise="gaussian", noise_parameter=0.2, generator=gen)
    assert gauss.std().item() == pytest.approx(0.2, rel=0.02)
    uniform = sample_noise(x, noise="uniform", noise_parameter=0.0, generator=gen)
    assert uniform.min() >= -0.5 and uniform.max() < 0.5


@pytest.fixture(scope="module")
def noise_library() -> native.NoiseKernel:
    found = native.noise_kernel()
    if found is None:
        pytest.fail("the noise kernel did not build: this machine has a C compiler")
    return found


def test_gaussian_noise_kernel_has_normal_moments_and_tails(
    noise_library: native.NoiseKernel,
) -> None:
    z = gaussian_noise((1_000_000,), 1.0, generator=torch.Generator().manual_seed(1)).double()
    assert z.mean().item() == pytest.approx(0.0, abs=0.005)
    assert z.var().item() == pytest.approx(1.0, abs=0.005)
    assert z.pow(3).mean().item() == pytest.approx(0.0, abs=0.02)
    assert z.pow(4).mean().item() == pytest.approx(3.0, abs=0.05)
    for t in (1.0, 2.0, 3.0):
        tail = (z.abs() > t).double().mean().item()
        assert tail == pytest.approx(math.erfc(t / math.sqrt(2)), rel=0.05)
    # Neighbours, including the two halves of a Box-Muller pair, are uncorrelated.
    for lag in (1, 256):
        pairs = torch.stack([z[:-lag], z[lag:]])
        assert abs(torch.corrcoef(pairs)[0, 1].item()) < 0.005


def test_gaussian_noise_does_not_depend_on_threads_or_splits(
    noise_library: native.NoiseKernel,
) -> None:
    n = 3 * quantizer.NOISE_CHUNK + 1001  # several hand-outs and a partial block
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        many = gaussian_noise((n,), 0.3, generator=torch.Generator().manual_seed(7))
    finally:
        torch.set_num_threads(threads)
    with one_thread():
        one = gaussian_noise((n,), 0.3, generator=torch.Generator().manual_seed(7))
    assert torch.equal(many, one)
    assert many.std().item() == pytest.approx(0.3, rel=0.01)
    # The stream is counter-based: any block-aligned window is the same values.
    seeds = torch.randint(0, 1 << 32, (2,), generator=torch.Generator().manual_seed(7)).tolist()
    start = 5 * noise_library.block
    window = torch.empty(700)
    assert noise_library.gaussian(window.data_ptr(), start, 700, *seeds, 0.3) == 0
    assert torch.equal(window, many[start : start + 700])
    assert noise_library.gaussian(window.data_ptr(), start + 1, 700, *seeds, 0.3) == -1
    other = gaussian_noise((n,), 0.3, generator=torch.Generator().manual_seed(8))
    assert abs(torch.corrcoef(torch.stack([many, other]))[0, 1].item()) < 0.01


def test_gaussian_noise_without_the_kernel_is_torch_randn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(quantizer, "noise_kernel", lambda: None)
    got = gaussian_noise((5, 7), 0.25, generator=torch.Generator().manual_seed(3))
    expected = torch.randn((5, 7), generator=torch.Generator().manual_seed(3)) * 0.25
    assert torch.equal(got, expected)
    double = gaussian_noise((4,), 1.0, dtype=torch.float64, generator=torch.Generator())
    assert double.dtype == torch.float64


def test_noise_is_reproducible_with_a_generator() -> None:
    x = _latents(100)
    settings = QuantizerSettings(kind="softround", noise="kumaraswamy", noise_parameter=2.0)
    a = settings.apply(x, generator=torch.Generator().manual_seed(5))
    b = settings.apply(x, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


@pytest.mark.parametrize("kind", ["softround", "softround_alone", "noise", "none"])
def test_soft_kinds_stay_close_and_have_finite_gradients(kind: str) -> None:
    x = _latents().requires_grad_()
    y = quantize(x, kind=kind, temperature=0.1, noise="gaussian", noise_parameter=0.2)  # type: ignore[arg-type]
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    assert (y - x).abs().max().item() < 2.0


def test_softround_with_noise_is_round_at_low_temperature() -> None:
    x = _latents()
    y = quantize(x, kind="softround", temperature=1e-4, noise="kumaraswamy", noise_parameter=1.0)
    # sr(sr(x) + n) with |n| < ½ returns round(x) (up to the rare half-integer ties).
    assert (y == torch.round(x)).float().mean().item() > 0.99


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"kind": "round"}, "quantizer kind"),
        ({"noise": "laplace"}, "quantizer noise"),
        ({"temperature": 0.0}, "quantizer temperature"),
        ({"temperature": math.inf}, "quantizer temperature"),
        ({"noise": "kumaraswamy", "noise_parameter": 0.9}, "quantizer noise_parameter"),
        ({"noise": "gaussian", "noise_parameter": -0.1}, "quantizer noise_parameter"),
        ({"ste_derivative": -1.0}, "quantizer ste_derivative"),
    ],
)
def test_bad_settings_name_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}"):
        QuantizerSettings(**changes)  # type: ignore[arg-type]
