"""Network quantisation: RDOQ never raises the rate-distortion cost of the step search; the
latents' RDOQ moves an improbable latent and never raises the cost either; every recipe but
``instant`` runs both on frames up to the size limit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from coolchic import codec
from coolchic.io.frame import Frame
from coolchic.model.config import ModelConfig, parse_synthesis
from coolchic.model.coolchic import CoolChicModel
from coolchic.nnquant.params import QuantizedNetworks
from coolchic.nnquant.search import (
    IMPROBABLE_LATENT_BITS,
    RDOQ_MAX_PIXELS,
    _loss_function,
    quantize_networks,
    rdoq_improbable_latents,
    takes_rdoq,
)
from coolchic.train.loss import Target
from coolchic.train.recipes import RECIPES, get_recipe
from coolchic.train.trainer import Trainer, evaluate
from tests.conftest import TINY_DECODER, noise_rgb_target, yuv420_planes

LMBDA = 1e-3


def _trained_model(target: Target, config: ModelConfig) -> CoolChicModel:
    trainer = Trainer(
        target=target,
        lmbda=LMBDA,
        recipe=get_recipe("instant"),
        model_factory=lambda _seed: CoolChicModel(config, target.height, target.width),
    )
    model, _ = trainer.run()
    return model


def _noise_image_model(seed: int) -> tuple[Target, CoolChicModel]:
    """A 32x24 RGB noise image and a small model trained on it with ``instant``."""
    target = noise_rgb_target(seed)
    torch.manual_seed(seed)
    return target, _trained_model(target, TINY_DECODER)


def _cost(model: CoolChicModel, target: Target, groups: QuantizedNetworks) -> float:
    bits = sum(group.n_bits for group in groups)
    assert bits == groups.n_bits
    return evaluate(model, target, LMBDA).loss + LMBDA * bits / target.n_pixels


def test_rdoq_does_not_raise_the_cost() -> None:
    target, model = _noise_image_model(seed=0)
    state = {key: value.clone() for key, value in model.state_dict().items()}

    plain = quantize_networks(model, target, LMBDA, rdoq=False)
    plain_cost = _cost(model, target, plain)
    model.load_state_dict(state)
    optimised = quantize_networks(model, target, LMBDA, rdoq=True)
    optimised_cost = _cost(model, target, optimised)

    assert optimised_cost <= plain_cost
    for group, before in zip(optimised, plain, strict=True):
        assert group.exponent == before.exponent  # RDOQ moves integers, not steps
        assert [q.shape for q in group.integers] == [q.shape for q in before.integers]


@pytest.mark.parametrize("module", ["arm", "upsampling", "synthesis"])
def test_partial_cost_of_a_module_equals_the_whole_evaluation(module: str) -> None:
    """The search prices a change to one module by the half of the forward pass it touches;
    that price must be the decoder's whole cost, or the search picks other steps."""
    target, model = _noise_image_model(seed=2)
    cost = _loss_function(model, target, LMBDA, module)
    before = cost()
    with torch.no_grad():
        for parameter in model.module(module).parameters():  # type: ignore[arg-type]
            parameter.mul_(0.7).add_(0.01)
    after = cost()
    assert after == evaluate(model, target, LMBDA).loss
    assert after != before


def test_upsampling_filters_are_coded_as_differences_from_their_start() -> None:
    """Filters still at their bicubic / Dirac start cost one bit per tap (all differences 0)."""
    target = noise_rgb_target(1)
    config = ModelConfig(
        n_ctx_rowcol=1, arm_hidden=(4,), synthesis=parse_synthesis("X-1-linear-none")
    )
    torch.manual_seed(0)
    model = CoolChicModel(config, target.height, target.width)  # untrained: filters at start

    groups = quantize_networks(model, target, LMBDA, rdoq=True)
    upsampling = groups[("upsampling", "weight")]
    n_taps = sum(q.size for q in upsampling.integers)

    assert n_taps > 0
    assert all(not q.any() for q in upsampling.coded())
    assert any(q.any() for q in upsampling.integers)  # the filters themselves are not zero
    assert upsampling.n_bits == n_taps  # order-0 exp-Golomb of 0 is one bit
    for key in (("arm", "weight"), ("synthesis", "weight")):
        np.testing.assert_array_equal(
            np.concatenate([c.ravel() for c in groups[key].coded()]), groups[key].flat()
        )


def test_latent_rdoq_moves_an_improbable_latent_and_never_raises_the_cost() -> None:
    target, model = _noise_image_model(seed=1)
    quantize_networks(model, target, LMBDA, rdoq=False)
    # a lone value far from anything the ARM predicts, in the coarsest grid
    index = model.latents.n_latents - 1
    model.latents.set_quantized(index, 40.0)
    assert float(model.latent_bits()[index]) >= IMPROBABLE_LATENT_BITS
    heavy = 1.0  # a λ where the bits dominate
    before = evaluate(model, target, heavy).loss
    moved = rdoq_improbable_latents(model, target, heavy)
    assert moved >= 1
    assert float(torch.round(model.latents.scaled_flat())[index]) in (0.0, 39.0)
    assert evaluate(model, target, heavy).loss < before
    # at the model's own λ the step keeps the cost or lowers it, never raises it
    start = evaluate(model, target, LMBDA).loss
    rdoq_improbable_latents(model, target, LMBDA)
    assert evaluate(model, target, LMBDA).loss <= start


def test_every_recipe_but_instant_runs_rdoq_on_frames_up_to_the_limit() -> None:
    for recipe in RECIPES.values():
        assert takes_rdoq(recipe, RDOQ_MAX_PIXELS) == (recipe.name != "instant")
        assert not takes_rdoq(recipe, RDOQ_MAX_PIXELS + 1)


def test_an_encode_runs_both_rdoqs_only_when_its_recipe_takes_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    real_quantize, real_latents = codec.quantize_networks, codec.rdoq_improbable_latents

    def recording_quantize(*args: object, rdoq: bool) -> QuantizedNetworks:
        calls.append(f"networks rdoq={rdoq}")
        return real_quantize(*args, rdoq=rdoq)  # type: ignore[arg-type]

    def recording_latents(*args: object) -> int:
        calls.append("latents")
        return real_latents(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(codec, "quantize_networks", recording_quantize)
    monkeypatch.setattr(codec, "rdoq_improbable_latents", recording_latents)
    frame = Frame.from_integer_planes(yuv420_planes(16, 8, 8, seed=1), fmt="yuv420", bit_depth=8)
    codec.encode(frame, codec.EncoderConfig(recipe="instant"))
    assert calls == ["networks rdoq=False"]
    # The codec follows the recipe's flag (``instant`` with it set, to keep the test short),
    # and the stream with the moved integers decodes to the encoder's reconstruction.
    monkeypatch.setitem(RECIPES, "instant", dataclasses.replace(RECIPES["instant"], rdoq=True))
    encoded = codec.encode(frame, codec.EncoderConfig(recipe="instant"))
    assert calls == ["networks rdoq=False", "networks rdoq=True", "latents"]
    decoded = codec.decode(encoded.bitstream)
    for ours, theirs in zip(decoded.planes, encoded.decoded.planes, strict=True):
        np.testing.assert_array_equal(ours, theirs)
