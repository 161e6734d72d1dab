"""Learned ×2 upsampling (separable symmetric transposed conv) and pre-concatenation filters."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from coolchic.model import upsampling
from coolchic.model.latents import grid_shapes
from coolchic.model.upsampling import (
    BICUBIC_HALF_KERNEL,
    Upsampling,
    initial_half_kernel,
    polyphase,
    preconcat_filter,
    upsample2x,
)


def _reference_up2(x: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
    """Spec §1.5 literally: replicate-pad K/2, 2-D transposed conv stride 2, crop K − 1 + K/2."""
    kernel = 2 * half.shape[0]
    full = torch.cat([half, half.flip(0)])
    padded = F.pad(x, (kernel // 2,) * 4, mode="replicate")
    y = F.conv_transpose2d(padded, torch.outer(full, full)[None, None], stride=2)
    crop = kernel - 1 + kernel // 2
    h, w = x.shape[-2:]
    return y[..., crop : crop + 2 * h, crop : crop + 2 * w]


def _smooth(h: int, w: int, batch: int = 1) -> torch.Tensor:
    rows = torch.linspace(0, 1, h).view(1, 1, h, 1)
    cols = torch.linspace(0, 1, w).view(1, 1, 1, w)
    return torch.sin(3 * rows + 2 * cols + torch.arange(batch).view(batch, 1, 1, 1))


@pytest.mark.parametrize("kernel", [4, 6, 8, 10, 12, 16])
@pytest.mark.parametrize(("h", "w"), [(5, 7), (1, 1), (2, 1), (4, 3)])
def test_polyphase_paths_equal_the_transposed_convolution(kernel: int, h: int, w: int) -> None:
    gen = torch.Generator().manual_seed(kernel * 100 + h * 10 + w)
    half = torch.randn(kernel // 2, generator=gen)
    x = torch.randn(3, 1, h, w, generator=gen)
    reference = _reference_up2(x, half)
    separable = upsample2x(x, half)
    kron = upsample2x(x, half, separable=False)
    assert separable.shape == kron.shape == (3, 1, 2 * h, 2 * w)
    torch.testing.assert_close(separable, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(kron, reference, rtol=1e-5, atol=1e-5)


def test_polyphase_uses_half_the_taps_per_phase() -> None:
    for kernel in (4, 6, 8, 16):
        poly = polyphase(kernel)
        assert all(len(taps) == kernel // 2 for taps in poly.taps)
        assert sorted(poly.taps[0] + poly.taps[1]) == list(range(kernel))


def test_crop_to_an_odd_target() -> None:
    x = torch.randn(2, 1, 5, 4)
    half = initial_half_kernel(8)
    full = upsample2x(x, half)
    cropped = upsample2x(x, half, size=(9, 7))
    torch.testing.assert_close(cropped, full[..., :9, :7])
    with pytest.raises(ValueError, match="size"):
        upsample2x(x, half, size=(11, 8))


def test_initial_filter_is_bicubic() -> None:
    half = initial_half_kernel(8)
    torch.testing.assert_close(half, torch.tensor(BICUBIC_HALF_KERNEL))
    assert torch.cat([half, half.flip(0)]).sum().item() == pytest.approx(2.0)
    x = _smooth(9, 12, batch=2)
    bicubic = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
    torch.testing.assert_close(upsample2x(x, half), bicubic, rtol=0, atol=1e-5)
    # Larger kernels are zero-padded bicubic; smaller ones bilinear.
    torch.testing.assert_close(upsample2x(x, initial_half_kernel(12)), bicubic, rtol=0, atol=1e-5)
    bilinear = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(upsample2x(x, initial_half_kernel(4)), bilinear, rtol=0, atol=1e-5)


def test_preconcat_separable_equals_2d_and_starts_as_doubling() -> None:
    x = torch.randn(2, 1, 6, 9)
    half = torch.randn(4)
    torch.testing.assert_close(
        preconcat_filter(x, half), preconcat_filter(x, half, separable=False), rtol=1e-5, atol=1e-5
    )
    dirac = torch.tensor([0.0, 0.0, 0.0, 1.0])
    torch.testing.assert_close(preconcat_filter(x, dirac), 2 * x)
    # Zero padding: a constant map is attenuated at the border only.
    ones = torch.ones(1, 1, 8, 8)
    out = preconcat_filter(ones, torch.tensor([0.0, 0.0, 0.5, 1.0]))
    assert out[0, 0, 4, 4].item() == pytest.approx(1 + 4.0)
    assert out[0, 0, 0, 0].item() == pytest.approx(1 + 1.5 * 1.5)


@pytest.mark.parametrize(("height", "width"), [(34, 66), (13, 7), (1, 1), (5, 1), (128, 192)])
def test_output_shape_for_odd_sizes(height: int, width: int) -> None:
    shapes = grid_shapes(height, width, 7)
    grids = [torch.randn(1, 1, h, w) for h, w in shapes]
    up = Upsampling(7, kernel=8, preconcat_kernel=7)
    assert up(grids).shape == (1, 7, height, width)
    assert up(grids, separable=False).shape == (1, 7, height, width)


def test_separable_module_equals_2d_module() -> None:
    shapes = grid_shapes(23, 18, 5)
    grids = [torch.randn(1, 1, h, w) for h, w in shapes]
    up = Upsampling(5, kernel=8, preconcat_kernel=7)
    with torch.no_grad():
        up.transposed_half.add_(0.05 * torch.randn_like(up.transposed_half))
        up.preconcat_half.add_(0.05 * torch.randn_like(up.preconcat_half))
    torch.testing.assert_close(up(grids), up(grids, separable=False), rtol=1e-4, atol=1e-5)


def test_channel_k_is_grid_k_upsampled_k_times() -> None:
    shapes = grid_shapes(11, 14, 4)
    grids = [torch.randn(1, 1, h, w) for h, w in shapes]
    up = Upsampling(4, kernel=8, preconcat_kernel=0)
    out = up(grids)
    torch.testing.assert_close(out[:, 0:1], grids[0])
    half = up.transposed_half.detach()
    once = upsample2x(grids[1], half[0], size=shapes[0])
    torch.testing.assert_close(out[:, 1:2], once)
    twice = upsample2x(upsample2x(grids[2], half[1], size=shapes[1]), half[0], size=shapes[0])
    torch.testing.assert_close(out[:, 2:3], twice)
    # With the pre-concatenation filter at its initialisation, grid k is doubled before
    # being upsampled.
    doubled = Upsampling(4, kernel=8, preconcat_kernel=7)(grids)
    torch.testing.assert_close(doubled[:, :3], 2 * out[:, :3], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(doubled[:, 3], out[:, 3])


def test_parameters_and_single_grid() -> None:
    up = Upsampling(7, kernel=8, preconcat_kernel=7)
    assert up.transposed_half.shape == (6, 4)
    assert up.preconcat_half is not None and up.preconcat_half.shape == (6, 4)
    assert sum(p.numel() for p in up.parameters()) == 48
    assert Upsampling(7, kernel=8, preconcat_kernel=0).preconcat_half is None
    grid = torch.randn(1, 1, 4, 5)
    torch.testing.assert_close(Upsampling(1, kernel=8, preconcat_kernel=7)([grid]), grid)
    with pytest.raises(ValueError, match="grids"):
        up([grid])


def test_gradients_reach_the_filters() -> None:
    shapes = grid_shapes(16, 12, 4)
    grids = [torch.randn(1, 1, h, w, requires_grad=True) for h, w in shapes]
    up = Upsampling(4, kernel=8, preconcat_kernel=7)
    up(grids).square().sum().backward()
    assert up.transposed_half.grad is not None and torch.isfinite(up.transposed_half.grad).all()
    assert up.preconcat_half is not None and up.preconcat_half.grad is not None
    assert all(g.grad is not None for g in grids)


@pytest.mark.parametrize("size", [(13, 9), (16, 16), (5, 7)])
@pytest.mark.parametrize("preconcat_kernel", [7, 0])
@pytest.mark.parametrize(
    ("dense_max_size", "fir_min_elements"),
    [(0, 0), (0, 10**9), (128, 10**9)],
    ids=["per-tap", "unfold", "dense"],
)
def test_separable_gradients_equal_the_2d_reference(
    size: tuple[int, int],
    preconcat_kernel: int,
    dense_max_size: int,
    fir_min_elements: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The three eager forms of the 1-D passes (per tap with a hand-written backward, used on
    large maps; unfold; dense matrices by level, used on small maps) agree with autograd of
    the 2-D form, values and gradients."""
    monkeypatch.setattr(upsampling, "DENSE_MAX_SIZE", dense_max_size)
    monkeypatch.setattr(upsampling, "FIR_MIN_ELEMENTS", fir_min_elements)
    torch.manual_seed(0)
    up = Upsampling(5, kernel=8, preconcat_kernel=preconcat_kernel).double()
    with torch.no_grad():
        up.transposed_half.add_(0.1 * torch.randn_like(up.transposed_half))
        if up.preconcat_half is not None:
            up.preconcat_half.add_(0.1 * torch.randn_like(up.preconcat_half))
    grids = [
        torch.randn(1, 1, h, w, dtype=torch.float64, requires_grad=True)
        for h, w in grid_shapes(*size, 5)
    ]
    weight = torch.randn(1, 5, *size, dtype=torch.float64)
    gradients = []
    for separable in (True, False):
        for tensor in (*grids, *up.parameters()):
            tensor.grad = None
        out = up(grids, separable=separable)
        (out * weight).sum().backward()
        gradients.append([out.detach(), *(t.grad.clone() for t in (*grids, *up.parameters()))])
    for ours, reference in zip(*gradients, strict=True):
        torch.testing.assert_close(ours, reference, rtol=1e-9, atol=1e-9)
