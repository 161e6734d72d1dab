"""benchmarks/post_training_bounds.py: the measurements on a fixed model keep their promises."""

from __future__ import annotations

import dataclasses
from types import ModuleType

import pytest
import torch

from coolchic.model.coolchic import CoolChicModel
from coolchic.train.loss import Target
from coolchic.train.trainer import evaluate
from tests.conftest import TINY_DECODER, load_benchmark, noise_rgb_target

LMBDA = 1e-2


@pytest.fixture(scope="module")
def bounds() -> ModuleType:
    return load_benchmark("post_training_bounds.py")


def _model_with_latents(seed: int, stabiliser: bool = False) -> tuple[Target, CoolChicModel]:
    """A 32x24 RGB noise image and an untrained model whose latents round to -3 … 3."""
    target = noise_rgb_target(seed)
    torch.manual_seed(seed)
    config = dataclasses.replace(TINY_DECODER, arm_stabiliser=stabiliser)
    model = CoolChicModel(config, 24, 32)
    with torch.no_grad():
        for grid in model.latents.grids:
            grid.copy_(torch.randn_like(grid) * 1.2 / model.latents.gain)
        if model.arm.stabiliser is not None:  # it starts at 0: make it count
            model.arm.stabiliser.weight.normal_(0.0, 0.3)
    return target, model


def test_candidates_are_exactly_the_non_zero_latents(bounds: ModuleType) -> None:
    target, model = _model_with_latents(seed=0)
    flat = torch.round(model.latents.scaled_flat()).detach()
    ranked = bounds.ranked_candidates(model, target, LMBDA).tolist()
    assert sorted(ranked) == torch.nonzero(flat).flatten().tolist()
    assert len(ranked) < flat.numel()  # some latents are 0 and are not candidates


def test_greedy_moves_one_step_towards_zero_and_never_raises_the_cost(
    bounds: ModuleType,
) -> None:
    target, model = _model_with_latents(seed=1)
    before = torch.round(model.latents.scaled_flat()).detach()
    start = evaluate(model, target, LMBDA).loss
    candidates = bounds.ranked_candidates(model, target, LMBDA).tolist()[:60]  # the best ranked

    cost, moved = bounds.greedy_towards_zero(model, target, LMBDA, candidates)

    after = torch.round(model.latents.scaled_flat()).detach()
    changed = torch.nonzero(after != before).flatten()
    assert cost <= start
    assert cost == pytest.approx(evaluate(model, target, LMBDA).loss)  # the model holds the moves
    assert moved == changed.numel() > 0  # random latents: some steps towards 0 pay
    assert torch.equal(after[changed].abs(), before[changed].abs() - 1)
    assert set(changed.tolist()) <= set(candidates)


def test_per_grid_offsets_never_add_bits(bounds: ModuleType) -> None:
    _, model = _model_with_latents(seed=2, stabiliser=True)
    before, after = bounds.grid_offset_bits(model, steps=50)
    # priced as the model prices them, its stabiliser once
    assert before == pytest.approx(float(model.latent_bits().sum()), rel=1e-5)
    assert after < before  # an untrained ARM's scale is far from the best per grid
