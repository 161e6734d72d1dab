"""The networks' coded size in training: the slope added to their gradients."""

from __future__ import annotations

import math

import pytest
import torch

from coolchic.codec import default_model_config
from coolchic.model.coolchic import CoolChicModel
from coolchic.model.layout import upsampling_initial_values
from coolchic.model.quantizer import INFERENCE
from coolchic.nnquant.params import parameter_layout
from coolchic.train import loss
from coolchic.train.loss import (
    NETWORK_RATE_MIN_LMBDA,
    NETWORK_RATE_WEIGHT,
    add_network_rate_gradient,
    network_rate_weight,
)
from coolchic.train.trainer import make_optimizer, select_trained, training_step
from tests.conftest import noise_rgb_target

ALL = ("latents", "arm", "upsampling", "synthesis")


def perturbed_model(recipe: str, seed: int = 0) -> CoolChicModel:
    torch.manual_seed(seed)
    model = CoolChicModel(default_model_config(1e-3, recipe, pixels=24 * 16), 16, 24)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if not name.startswith("latents"):
                parameter.add_(0.1 * torch.randn_like(parameter))
    return model


def coded_groups(model: CoolChicModel) -> dict[str, list[list[tuple[str, torch.Tensor]]]]:
    """Each module's groups as the stream codes them: ``[(name, parameter), …]`` per group."""
    groups: dict[str, list[list[tuple[str, torch.Tensor]]]] = {}
    for (module, _), layout in parameter_layout(model.config).items():
        if layout:
            parent = model.module(module)  # type: ignore[arg-type]
            group = [(name, parent.get_parameter(name)) for name, _ in layout]
            groups.setdefault(module, []).append(group)
    return groups


@pytest.mark.parametrize("recipe", ["fast", "medium"])
def test_each_value_gets_the_slope_of_its_groups_bits(recipe: str) -> None:
    """``weight · sign(θ) / (ln 2 · mean |θ|)`` over θ's group, added to what was there."""
    model = perturbed_model(recipe)
    config = model.config
    start = upsampling_initial_values(
        config.n_grids, config.upsampling_kernel, config.preconcat_kernel
    )
    for parameter in model.parameters():
        parameter.grad = torch.full_like(parameter, 0.5)
    add_network_rate_gradient(model, 1e-3)
    n_checked = 0
    for module, groups in coded_groups(model).items():
        for group in groups:
            coded = [
                p.detach() - torch.from_numpy(start[name]) if module == "upsampling" else p.detach()
                for name, p in group
            ]
            spread = torch.cat([c.reshape(-1) for c in coded]).abs().mean()
            for (name, parameter), value in zip(group, coded, strict=True):
                expected = 0.5 + 1e-3 * torch.sign(value) / (math.log(2) * spread)
                torch.testing.assert_close(parameter.grad, expected, msg=name)
                n_checked += 1
    assert n_checked >= 9
    assert all(float(p.grad.max()) == 0.5 for p in model.latents.parameters())


def test_parameters_without_a_gradient_are_left_alone() -> None:
    model = perturbed_model("fast", seed=1)
    model.synthesis.layers[0].weight.grad = torch.zeros_like(model.synthesis.layers[0].weight)
    add_network_rate_gradient(model, 1e-3)
    assert model.synthesis.layers[0].weight.grad is not None
    assert float(model.synthesis.layers[0].weight.grad.abs().max()) > 0
    others = [p for p in model.parameters() if p is not model.synthesis.layers[0].weight]
    assert all(p.grad is None for p in others)


def test_untrained_upsampling_filters_get_no_slope() -> None:
    """At their starting values the filters are coded as zeros: nothing to pull towards."""
    model = CoolChicModel(default_model_config(1e-3, "fast", pixels=384), 16, 24)
    for parameter in model.upsampling.parameters():
        parameter.grad = torch.zeros_like(parameter)
    add_network_rate_gradient(model, 1.0)
    for parameter in model.upsampling.parameters():
        assert parameter.grad is not None
        assert float(parameter.grad.abs().max()) == 0.0


def train_briefly(monkeypatch: pytest.MonkeyPatch, weight: float, lmbda: float) -> CoolChicModel:
    monkeypatch.setattr(loss, "NETWORK_RATE_WEIGHT", weight)
    model = perturbed_model("fast", seed=3)
    target = noise_rgb_target(0, height=16, width=24)
    networks, parameters = select_trained(model, ALL)
    optimizer = make_optimizer(networks, parameters, lr=1e-2)
    for _ in range(30):
        training_step(
            model,
            optimizer,
            networks,
            target=target,
            lmbda=lmbda,
            quantizer=INFERENCE,
            generator=torch.Generator().manual_seed(0),
        )
    return model


def coded_size(model: CoolChicModel) -> float:
    return sum(
        float(p.detach().abs().sum())
        for name, p in model.named_parameters()
        if name.startswith(("arm.", "synthesis."))
    )


def test_training_at_low_rates_shrinks_the_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    free = train_briefly(monkeypatch, 0.0, lmbda=0.1)
    charged = train_briefly(monkeypatch, NETWORK_RATE_WEIGHT, lmbda=0.1)
    assert coded_size(charged) < 0.9 * coded_size(free)


def test_training_at_high_rates_leaves_the_networks_free(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lmbda = NETWORK_RATE_MIN_LMBDA / 2
    assert network_rate_weight(lmbda) == 0.0
    assert network_rate_weight(NETWORK_RATE_MIN_LMBDA) == NETWORK_RATE_WEIGHT
    free = train_briefly(monkeypatch, 0.0, lmbda=lmbda)
    default = train_briefly(monkeypatch, NETWORK_RATE_WEIGHT, lmbda=lmbda)
    assert coded_size(default) == coded_size(free)


@pytest.mark.parametrize("lmbda", [NETWORK_RATE_MIN_LMBDA / 2, NETWORK_RATE_MIN_LMBDA * 2])
def test_the_networks_gradient_is_clipped_at_every_rate(
    monkeypatch: pytest.MonkeyPatch, lmbda: float
) -> None:
    clipped: list[int] = []
    clip = torch.nn.utils.clip_grad_norm_

    def counting_clip(parameters: list[torch.Tensor], max_norm: float) -> torch.Tensor:
        clipped.append(len(parameters))
        return clip(parameters, max_norm)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", counting_clip)
    model = perturbed_model("fast", seed=4)
    networks, parameters = select_trained(model, ALL)
    training_step(
        model,
        make_optimizer(networks, parameters, lr=1e-2),
        networks,
        target=noise_rgb_target(0, height=16, width=24),
        lmbda=lmbda,
        quantizer=INFERENCE,
        generator=torch.Generator().manual_seed(0),
    )
    assert clipped == [len(networks)]
