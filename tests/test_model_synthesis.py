"""Convolutional synthesis built from layer specs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from coolchic.model.config import DEFAULT_SYNTHESIS, LayerSpec, parse_synthesis
from coolchic.model.synthesis import Synthesis


def _reference(synthesis: Synthesis, x: torch.Tensor) -> torch.Tensor:
    """Plain per-layer Conv2d with replicate padding, as the spec words it."""
    for spec, conv in zip(synthesis.specs, synthesis.layers, strict=True):
        pad = (spec.kernel - 1) // 2
        y = F.conv2d(F.pad(x, (pad,) * 4, mode="replicate"), conv.weight, conv.bias)
        if spec.kind == "residual":
            y = y + x
        x = torch.relu(y) if spec.nonlinearity == "relu" else y
    return x


def test_initialisation_follows_the_spec() -> None:
    torch.manual_seed(0)
    synthesis = Synthesis(7, parse_synthesis(DEFAULT_SYNTHESIS))
    first, second, third, fourth = synthesis.layers
    assert first.weight.shape == (40, 7, 1, 1) and third.weight.shape == (3, 3, 3, 3)
    # linear: default bound 1/sqrt(C_in k²) divided by C_out².
    assert first.weight.abs().max().item() <= 1 / math.sqrt(7) / 40**2
    assert first.weight.abs().max().item() > 0.5 / math.sqrt(7) / 40**2
    assert second.weight.abs().max().item() <= 1 / math.sqrt(40) / 3**2
    for conv in (third, fourth):
        assert torch.count_nonzero(conv.weight) == 0
    assert all(torch.count_nonzero(conv.bias) == 0 for conv in synthesis.layers)
    assert synthesis.out_channels == 3


def test_forward_matches_the_plain_convolutions() -> None:
    torch.manual_seed(0)
    synthesis = Synthesis(7, parse_synthesis("16-1-linear-relu,4-3-linear-none,4-3-residual-relu"))
    with torch.no_grad():
        for conv in synthesis.layers:
            conv.weight.normal_(std=0.3)
            conv.bias.normal_(std=0.1)
    x = torch.randn(1, 7, 13, 10)
    out = synthesis(x)
    assert out.shape == (1, 4, 13, 10)
    torch.testing.assert_close(out, _reference(synthesis, x), rtol=1e-5, atol=1e-5)
    # Batches larger than one take the convolution path for 1x1 layers.
    batch = torch.randn(2, 7, 5, 6)
    torch.testing.assert_close(synthesis(batch), _reference(synthesis, batch), rtol=1e-5, atol=1e-5)


def test_residual_layers_start_as_identity() -> None:
    synthesis = Synthesis(
        3, (LayerSpec(3, 3, "residual", "none"), LayerSpec(3, 5, "residual", "none"))
    )
    x = torch.randn(1, 3, 6, 4)
    torch.testing.assert_close(synthesis(x), x)


def test_one_pixel_image() -> None:
    synthesis = Synthesis(7, parse_synthesis(DEFAULT_SYNTHESIS))
    assert synthesis(torch.randn(1, 7, 1, 1)).shape == (1, 3, 1, 1)


def test_bad_residual_width_raises() -> None:
    with pytest.raises(ValueError, match="synthesis layer 1"):
        Synthesis(7, parse_synthesis("8-1-linear-relu,4-3-residual-none"))
    with pytest.raises(ValueError, match="at least one layer"):
        Synthesis(7, ())


def test_gradients_reach_every_layer() -> None:
    torch.manual_seed(0)
    synthesis = Synthesis(7, parse_synthesis(DEFAULT_SYNTHESIS))
    x = torch.randn(1, 7, 8, 8, requires_grad=True)
    (synthesis(x) - 0.5).square().mean().backward()
    for conv in synthesis.layers:
        assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all()
    assert x.grad is not None


def test_the_stabiliser_starts_at_zero_and_adds_a_linear_map_of_the_input() -> None:
    layers = parse_synthesis("8-1-linear-relu,3-1-linear-none")
    torch.manual_seed(0)
    plain = Synthesis(7, layers)
    torch.manual_seed(0)
    stable = Synthesis(7, layers, stabiliser=True)
    x = torch.randn(1, 7, 5, 6)
    assert stable.stabiliser is not None and stable.stabiliser.bias is None
    assert torch.equal(stable(x), plain(x))  # zero at the start: the same synthesis
    with torch.no_grad():
        stable.stabiliser.weight.copy_(torch.randn(3, 7, 1, 1))
    linear = torch.einsum("oc,bchw->bohw", stable.stabiliser.weight.flatten(1), x)
    torch.testing.assert_close(stable(x), plain(x) + linear)
    stable(x).square().sum().backward()
    assert stable.stabiliser.weight.grad is not None
    assert stable.stabiliser.weight.grad.abs().sum() > 0
