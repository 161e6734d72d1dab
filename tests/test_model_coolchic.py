"""The composed model: forward, gradients, decoder path; output conversions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from coolchic.errors import InputError
from coolchic.io.naming import check_dimensions
from coolchic.model.config import ModelConfig, parse_synthesis
from coolchic.model.coolchic import MODULE_NAMES, CoolChicModel
from coolchic.model.output import round_to_bit_depth
from coolchic.model.quantizer import INFERENCE, QuantizerSettings
from coolchic.train.loss import decoded_planes, split_output


def _model(height: int = 34, width: int = 66, **changes: object) -> CoolChicModel:
    torch.manual_seed(0)
    return CoolChicModel(ModelConfig(**changes), height, width)  # type: ignore[arg-type]


def _randomise_latents(model: CoolChicModel, scale: float = 0.2) -> None:
    with torch.no_grad():
        for grid in model.latents.grids:
            grid.normal_(std=scale)


def test_forward_shapes() -> None:
    model = _model()
    out = model(quantizer=QuantizerSettings(), with_grid_rate=True)
    assert out.x_hat.shape == (1, 3, 34, 66)
    assert out.rate_bits.shape == ()
    assert out.grid_rate_bits is not None and out.grid_rate_bits.shape == (7,)
    torch.testing.assert_close(out.grid_rate_bits.sum(), out.rate_bits.detach())
    assert model(quantizer=INFERENCE).grid_rate_bits is None


@pytest.mark.parametrize(("height", "width"), [(1, 1), (1, 2), (2, 1), (3, 5), (17, 9)])
def test_tiny_and_odd_images(height: int, width: int) -> None:
    model = _model(height, width)
    _randomise_latents(model)
    out = model(
        quantizer=QuantizerSettings(kind="softround", noise="gaussian", noise_parameter=0.2)
    )
    assert out.x_hat.shape == (1, 3, height, width)
    assert torch.isfinite(out.rate_bits)


@pytest.mark.parametrize(
    "settings",
    [
        QuantizerSettings(kind="softround", temperature=0.3, noise="kumaraswamy"),
        QuantizerSettings(kind="ste", temperature=1e-4),
        QuantizerSettings(kind="noise_v2"),
    ],
)
def test_loss_backward_reaches_every_parameter_group(settings: QuantizerSettings) -> None:
    model = _model()
    _randomise_latents(model)
    target = torch.rand(1, 3, 34, 66)
    out = model(quantizer=settings)
    loss = F.mse_loss(out.x_hat, target) + 1e-3 * out.rate_bits / (34 * 66)
    loss.backward()
    groups = model.param_groups()
    assert tuple(groups) == MODULE_NAMES
    for name, params in groups.items():
        assert params, name
        for param in params:
            assert param.grad is not None, name
            assert torch.isfinite(param.grad).all(), name
        assert any(torch.count_nonzero(p.grad) > 0 for p in params), name


def test_hardround_trains_only_the_networks() -> None:
    model = _model()
    _randomise_latents(model)
    out = model(quantizer=INFERENCE)
    (out.x_hat.square().mean() + out.rate_bits / 1000).backward()
    assert all(p.grad is None for p in model.param_groups()["latents"])
    assert all(p.grad is not None for p in model.param_groups()["synthesis"])


def test_param_groups_partition_the_parameters() -> None:
    model = _model()
    grouped = [id(p) for params in model.param_groups().values() for p in params]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())
    assert model.module("arm") is model.arm


def test_index_buffers_are_not_state() -> None:
    model = _model()
    keys = set(model.state_dict())
    assert not any("index" in key or "inverse" in key or "grid_id" in key for key in keys)
    assert any(key.startswith("latents.") for key in keys)
    clone = CoolChicModel(ModelConfig(), 34, 66)
    clone.load_state_dict(model.state_dict())


def test_quantized_latents_and_decoder_path_match_the_forward() -> None:
    model = _model()
    _randomise_latents(model, scale=0.5)
    latents = model.quantized_latents()
    assert [tuple(t.shape) for t in latents] == [(1, 1, h, w) for h, w in model.grid_shapes]
    assert all(torch.equal(t, torch.round(t)) for t in latents)
    assert any(torch.count_nonzero(t) > 0 for t in latents)
    with torch.no_grad():
        out = model(quantizer=INFERENCE, with_grid_rate=True)
        decoded = model.decode_from_latents(latents)
        decoded_int = model.decode_from_latents([t.to(torch.int32) for t in latents])
        decoded_2d = model.decode_from_latents(latents, separable=False)
        total = model.rate_of_latents(latents)
    torch.testing.assert_close(decoded, out.x_hat, rtol=0, atol=0)
    torch.testing.assert_close(decoded_int, out.x_hat, rtol=0, atol=0)
    torch.testing.assert_close(decoded_2d, out.x_hat, rtol=1e-4, atol=1e-5)
    assert torch.equal(total, out.rate_bits)


def test_decoder_rejects_wrong_latents() -> None:
    model = _model(8, 8, n_grids=3, synthesis=parse_synthesis("3-1-linear-none"))
    latents = model.quantized_latents()
    with pytest.raises(ValueError, match="expected 3 grids"):
        model.decode_from_latents(latents[:2])
    with pytest.raises(ValueError, match=r"latents\[2\]"):
        model.decode_from_latents([latents[0], latents[1], torch.zeros(1, 1, 3, 3)])


def test_small_configuration() -> None:
    model = _model(
        20,
        12,
        n_grids=3,
        n_ctx_rowcol=1,
        arm_hidden=(),
        synthesis=parse_synthesis("3-3-linear-none"),
        upsampling_kernel=4,
        preconcat_kernel=0,
        out_channels=3,
    )
    out = model(quantizer=QuantizerSettings())
    out.rate_bits.backward()
    assert out.x_hat.shape == (1, 3, 20, 12)


def test_yuv420_output_averages_chroma() -> None:
    """The training side's 4:2:0 conversion (the decoder's numpy one is checked against torch's
    ``avg_pool2d`` in ``test_decoder.py``)."""
    x = torch.rand(1, 3, 4, 6) * 1.4 - 0.2
    original = x.clone()
    y, chroma = split_output(x, "yuv420")
    assert chroma is not None
    assert y.shape == (1, 1, 4, 6) and chroma.shape == (1, 2, 2, 3)
    torch.testing.assert_close(y, x[:, :1])
    torch.testing.assert_close(chroma[0, 0, 1, 2], x[0, 1, 2:4, 4:6].mean())
    torch.testing.assert_close(chroma[0, 1, 0, 0], x[0, 2, 0:2, 0:2].mean())
    luma, chroma = decoded_planes(x, "yuv420", 16)  # clamped after the mean, then rounded
    assert chroma is not None and chroma.shape == (1, 2, 2, 3)
    torch.testing.assert_close(luma, round_to_bit_depth(x[:, :1].clamp(0, 1), 16))
    u = round_to_bit_depth(x[0, 1, 2:4, 4:6].mean().clamp(0, 1), 16)
    torch.testing.assert_close(chroma[0, 0, 1, 2], u)
    v = round_to_bit_depth(x[0, 2, 0:2, 0:2].mean().clamp(0, 1), 16)
    torch.testing.assert_close(chroma[0, 1, 0, 0], v)
    assert torch.equal(x, original)
    with pytest.raises(InputError, match="even"):
        check_dimensions(5, 6, "yuv420")  # odd 4:2:0 frames never reach the model


def test_rgb_output_and_bit_depth_rounding() -> None:
    x = torch.tensor([-0.5, 0.2, 1.7]).view(1, 3, 1, 1)
    full, chroma = split_output(x, "rgb")
    assert chroma is None and full is x
    decoded, no_chroma = decoded_planes(x, "rgb", 16)
    assert no_chroma is None
    torch.testing.assert_close(
        decoded, round_to_bit_depth(torch.tensor([0.0, 0.2, 1.0]), 16).view(1, 3, 1, 1)
    )
    values = torch.tensor([0.0, 0.5, 1.0, 0.1234])
    rounded = round_to_bit_depth(values, 8)
    torch.testing.assert_close(rounded * 255, torch.round(values * 255))
    assert round_to_bit_depth(values, 10)[1].item() == pytest.approx(512 / 1023)
    with pytest.raises(ValueError, match="bit_depth"):
        round_to_bit_depth(values, 0)
