"""benchmarks/network_headroom.py: each larger network starts at the trained cost."""

from __future__ import annotations

from types import ModuleType

import pytest
import torch

from coolchic.model.coolchic import CoolChicModel
from coolchic.train.loss import Target, distortion
from tests.conftest import TINY_DECODER, load_benchmark, noise_rgb_target


@pytest.fixture(scope="module")
def headroom() -> ModuleType:
    return load_benchmark("network_headroom.py")


def _model(seed: int) -> tuple[Target, CoolChicModel]:
    """A 32x24 RGB noise image and an untrained model whose latents round to -3 … 3, with
    random networks (trained ones are never at the initial zeros)."""
    torch.manual_seed(seed)
    model = CoolChicModel(TINY_DECODER, 24, 32)
    with torch.no_grad():
        for grid in model.latents.grids:
            grid.copy_(torch.randn_like(grid) * 1.2 / model.latents.gain)
        for parameter in [*model.arm.parameters(), *model.synthesis.parameters()]:
            parameter.normal_(0.0, 0.3)
    return noise_rgb_target(seed), model


def test_a_wider_arm_with_more_context_starts_at_the_trained_bits(headroom: ModuleType) -> None:
    _, model = _model(seed=0)
    flat = headroom.rounded_latents(model)
    contexts = headroom.contexts_of(model, flat, TINY_DECODER.n_ctx_rowcol + 1)
    assert contexts.shape[1] > model.arm.n_contexts  # the trained inputs are a subset
    params = headroom.embedded_arm(model, contexts, hidden=3 * TINY_DECODER.arm_hidden[0])
    trained = float(model.latent_bits().sum())
    assert float(headroom.arm_bits(params, contexts, flat)) == pytest.approx(trained, rel=1e-5)


def test_every_arm_fit_starts_at_the_trained_bits_and_lowers_them(headroom: ModuleType) -> None:
    _, model = _model(seed=1)
    trained = float(model.latent_bits().sum())
    rows = headroom.arm_rows(model, steps=30)
    assert [row["variant"] for row in rows][-1] == "one ARM per coded grid"
    for row in rows:
        assert row["bits_start"] == pytest.approx(trained, abs=2)
        assert row["bits"] < row["bits_start"]  # random networks: a fit always finds bits


def test_every_synthesis_fit_starts_at_the_trained_distortion(headroom: ModuleType) -> None:
    target, model = _model(seed=2)
    with torch.no_grad():
        grids = model.latents.split(headroom.rounded_latents(model))[: TINY_DECODER.n_grids]
        trained = float(distortion(model.synthesis(model.upsampling(grids)), target))
    rows = headroom.synthesis_rows(model, target, steps=30)
    assert any("3x3" in str(row["variant"]) for row in rows)
    for row in rows:
        assert row["mse_start"] == pytest.approx(trained, rel=1e-5)
        assert row["mse"] < row["mse_start"]


def test_a_narrower_network_is_refused(headroom: ModuleType) -> None:
    _, model = _model(seed=3)
    flat = headroom.rounded_latents(model)
    contexts = headroom.contexts_of(model, flat, TINY_DECODER.n_ctx_rowcol)
    with pytest.raises(ValueError, match="narrower"):
        headroom.embedded_arm(model, contexts, hidden=1)
    with pytest.raises(ValueError, match="narrower"):
        headroom.embedded_synthesis(model, hidden=1, residual=False)
