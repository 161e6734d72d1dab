"""Cool-chic 5's inter-feature context (IFCE) and hyper-latents, training side."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

from coolchic.model.arm import InterFeatureContext
from coolchic.model.complexity import mac_per_pixel, parameter_counts
from coolchic.model.config import ModelConfig, parse_synthesis
from coolchic.model.coolchic import CoolChicModel
from coolchic.model.layout import coded_grid_shapes, grid_resolutions, ifce_sources
from coolchic.model.quantizer import QuantizerSettings

SMALL = ModelConfig(
    n_ctx_rowcol=2,
    arm_hidden=(8,),
    synthesis=parse_synthesis("8-1-linear-relu,3-1-linear-none"),
    n_grids=5,
)
SOFT = QuantizerSettings(kind="softround_alone", temperature=0.3)


def test_hyper_grids_sit_at_the_coarsest_resolutions() -> None:
    assert grid_resolutions(7, 3) == [0, 1, 2, 3, 4, 5, 6, 4, 5, 6]
    shapes = coded_grid_shapes(240, 416, 7, 3)
    assert shapes[7:] == shapes[4:7] == [(15, 26), (8, 13), (4, 7)]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ifce_features": 9}, "ifce_features"),
        ({"ifce_features": 2, "coarser_contexts": 1}, "ifce_features"),
        ({"hyper_grids": 2}, "hyper_grids"),
        ({"ifce_features": 2, "hyper_grids": 5}, "hyper_grids"),
    ],
)
def test_bad_ifce_settings_name_the_field(changes: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(SMALL, **changes)


def _plain_features(
    grids: list[torch.Tensor], resolutions: list[int], ifce: InterFeatureContext, g: int
) -> torch.Tensor:
    """Grid g's features from the definition, one latent at a time: the map of the values of
    every coarser grid at the co-located position of the next coarser resolution, rounded."""
    height, width = grids[g].shape
    layer = ifce.maps[g]
    out = torch.empty(ifce.n_features, height, width, dtype=grids[g].dtype)
    for r, c in itertools.product(range(height), range(width)):
        parent = (r >> 1, c >> 1)
        level = resolutions[g] + 1
        values = [
            grids[k][parent[0] >> (resolutions[k] - level), parent[1] >> (resolutions[k] - level)]
            for k in ifce.sources[g]
        ]
        out[:, r, c] = layer.weight @ torch.stack(values) + layer.bias
    return torch.clamp(torch.floor(out + 0.5), -64, 63)  # a predicted latent, half up


def test_features_read_the_co_located_coarser_values() -> None:
    """Odd sizes, so that the ceil grid sizes and the crops matter; zero planes elsewhere."""
    resolutions = grid_resolutions(5, 2)
    shapes = coded_grid_shapes(13, 11, 5, 2)
    generator = torch.Generator().manual_seed(0)
    grids = [torch.randn(h, w, generator=generator, dtype=torch.float64) for h, w in shapes]
    ifce = InterFeatureContext(resolutions, ifce_sources(5, 2), 2).double()
    with torch.no_grad():
        for parameter in ifce.parameters():
            parameter.normal_(generator=generator).mul_(30)  # some features past the clamp
    assert ifce.sources[0] == (1, 2, 3, 4, 5, 6)  # the hyper grids too
    planes = ifce.planes(grids)
    sizes = [2 * h * w for h, w in shapes]
    for g, part in enumerate(planes.split(sizes)):
        expected = (
            _plain_features(grids, resolutions, ifce, g)
            if g < 3
            else torch.zeros(2, *shapes[g], dtype=torch.float64)
        )
        torch.testing.assert_close(part.view(2, *shapes[g]), expected)


def test_a_model_with_hyper_latents_codes_them_and_does_not_upsample_them() -> None:
    config = dataclasses.replace(SMALL, ifce_features=2, hyper_grids=2)
    torch.manual_seed(0)
    model = CoolChicModel(config, 21, 17)
    assert len(model.latents.grids) == 7
    with torch.no_grad():
        for grid in model.latents.grids:
            grid.normal_()
        for parameter in model.arm.ifce.parameters():
            parameter.normal_()
    out = model(quantizer=SOFT, with_grid_rate=True)
    assert out.x_hat.shape == (1, 3, 21, 17)
    assert out.grid_rate_bits.shape == (7,)
    assert bool((out.grid_rate_bits[5:] > 0).all())  # the hyper grids cost bits
    # the image does not depend on the hyper grids; their rate and the IFCE do
    (out.x_hat.sum() + out.rate_bits).backward()
    hyper = model.latents.grids[5]
    assert hyper.grad is not None and hyper.grad.abs().sum() > 0
    model.zero_grad()
    model(quantizer=SOFT).x_hat.sum().backward()
    assert model.latents.grids[5].grad is None or model.latents.grids[5].grad.abs().sum() == 0
    assert config.n_contexts == SMALL.n_contexts + 2  # C_f values end the context


def test_the_features_start_at_zero() -> None:
    """A new IFCE adds nothing: the model starts as the one without it."""
    config = dataclasses.replace(SMALL, ifce_features=2, hyper_grids=1)
    model = CoolChicModel(config, 21, 17)
    grids = [torch.randn(h, w) for h, w in model.latents.shapes]
    assert not model.arm.ifce.planes(grids).any()


def test_parameter_counts_and_macs_include_ifce_and_hyper_latents() -> None:
    base = SMALL
    config = dataclasses.replace(SMALL, ifce_features=2, hyper_grids=2)
    model = CoolChicModel(config, 64, 96)
    counts = parameter_counts(config, 64, 96)
    assert counts.arm == sum(p.numel() for p in model.arm.parameters())
    assert counts.latents == sum(p.numel() for p in model.latents.parameters())
    assert mac_per_pixel(config, 64, 96).arm > mac_per_pixel(base, 64, 96).arm
