"""SOAP: preconditioned Adam for the network weights, plain Adam for the latents."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from coolchic.train import soap
from coolchic.train.soap import FUSED_ADAM_MIN_ELEMENTS, MAX_PRECONDITIONED_SIDE, Soap

ROOT = Path(__file__).resolve().parent.parent


def _excess_loss(optimizer_factory, steps: int = 300) -> float:
    """Fit a linear map from minibatches whose inputs have rotated, very unequal scales: a
    diagonal method (Adam) cannot follow the rotated curvature; SOAP's eigenbasis does."""
    generator = torch.Generator().manual_seed(0)
    rotation = torch.linalg.qr(torch.randn(6, 6, generator=generator))[0]
    mixing = torch.diag(torch.tensor([10.0, 3.0, 1.0, 0.3, 0.1, 0.03])) @ rotation
    true_weight = torch.randn(4, 6, generator=generator)
    weight = torch.nn.Parameter(torch.zeros(4, 6))
    optimizer = optimizer_factory([weight])
    for _ in range(steps):
        inputs = torch.randn(32, 6, generator=generator) @ mixing
        optimizer.zero_grad()
        ((inputs @ (weight - true_weight).T) ** 2).mean().backward()
        optimizer.step()
    inputs = torch.randn(4096, 6, generator=generator) @ mixing
    return float(((inputs @ (weight.detach() - true_weight).T) ** 2).mean())


def test_soap_beats_adam_on_rotated_curvature() -> None:
    soap = _excess_loss(lambda p: Soap(p, lr=0.03, weight_decay=0.0))
    adam = _excess_loss(lambda p: torch.optim.Adam(p, lr=0.03, betas=(0.95, 0.95)))
    assert soap < 0.1 * adam


def test_group_without_preconditioning_is_adam() -> None:
    torch.manual_seed(1)
    start = torch.randn(3, 5)
    ours = torch.nn.Parameter(start.clone())
    reference = torch.nn.Parameter(start.clone())
    soap = Soap(
        [{"params": [ours], "precondition": False}], lr=0.01, betas=(0.9, 0.999), weight_decay=0.0
    )
    adam = torch.optim.Adam([reference], lr=0.01, betas=(0.9, 0.999), eps=1e-8)
    for step in range(20):
        gradient = torch.randn(3, 5, generator=torch.Generator().manual_seed(step))
        for parameter, optimizer in ((ours, soap), (reference, adam)):
            parameter.grad = gradient.clone()
            optimizer.step()
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_large_adam_tensors_take_the_fused_kernel_with_the_same_values(
    weight_decay: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large frame's latents: torch's fused Adam, matching the Python form to rounding."""
    calls: list[int] = []
    fused = torch._fused_adam_

    def counted(*args: object, **kwargs: object) -> None:
        calls.append(1)
        fused(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch, "_fused_adam_", counted)
    start = torch.randn(FUSED_ADAM_MIN_ELEMENTS + 17, generator=torch.Generator().manual_seed(4))
    results = []
    for threshold in (FUSED_ADAM_MIN_ELEMENTS, start.numel() + 1):  # fused, then Python
        monkeypatch.setattr(soap, "FUSED_ADAM_MIN_ELEMENTS", threshold)
        latent = torch.nn.Parameter(start.clone())
        optimizer = Soap(
            [{"params": [latent], "precondition": False, "betas": (0.9, 0.999)}],
            lr=0.01,
            weight_decay=weight_decay,
        )
        for step in range(12):
            gradient = torch.randn(start.shape, generator=torch.Generator().manual_seed(step))
            latent.grad = gradient
            optimizer.step()
        results.append(latent.detach().clone())
    assert len(calls) == 12
    torch.testing.assert_close(results[0], results[1], rtol=1e-5, atol=1e-6)
    assert not torch.equal(results[0], start)


def test_the_fused_adam_gives_the_same_bits_with_any_thread_count() -> None:
    """Seeded encodes of large frames stay the same at any thread count."""
    n = FUSED_ADAM_MIN_ELEMENTS * 3 + 13  # chunk boundaries fall mid-vector

    def trained(threads: int) -> torch.Tensor:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            generator = torch.Generator().manual_seed(2)
            latent = torch.nn.Parameter(torch.randn(n, generator=generator))
            optimizer = Soap(
                [{"params": [latent], "precondition": False, "betas": (0.9, 0.999)}], lr=0.01
            )
            for _ in range(4):
                latent.grad = torch.randn(n, generator=generator) * 1e-3
                optimizer.step()
            return latent.detach().clone()
        finally:
            torch.set_num_threads(previous)

    one = trained(1)
    for threads in (2, 3, 7):
        assert torch.equal(trained(threads), one)


def test_vectors_and_large_sides_keep_identity_bases() -> None:
    bias = torch.nn.Parameter(torch.zeros(1, 4))
    wide = torch.nn.Parameter(torch.zeros(2, MAX_PRECONDITIONED_SIDE + 1))
    optimizer = Soap([bias, wide], lr=0.01)
    bias.grad = torch.ones(1, 4)
    wide.grad = torch.ones(2, MAX_PRECONDITIONED_SIDE + 1)
    optimizer.step()
    assert optimizer.state[bias]["basis_left"] is None
    assert optimizer.state[bias]["basis_right"].shape == (4, 4)
    assert optimizer.state[wide]["basis_left"].shape == (2, 2)
    assert optimizer.state[wide]["basis_right"] is None


def test_state_dict_round_trip_continues_identically() -> None:
    """A checkpointed optimiser must continue exactly as the uninterrupted one."""

    def gradients(step: int) -> torch.Tensor:
        return torch.randn(5, 3, 1, 1, generator=torch.Generator().manual_seed(step))

    straight = torch.nn.Parameter(torch.zeros(5, 3, 1, 1))
    optimizer = Soap([straight], lr=0.02, precondition_every=3)
    for step in range(12):
        straight.grad = gradients(step)
        optimizer.step()

    resumed = torch.nn.Parameter(torch.zeros(5, 3, 1, 1))
    first = Soap([resumed], lr=0.02, precondition_every=3)
    for step in range(7):
        resumed.grad = gradients(step)
        first.step()
    saved = first.state_dict()
    second = Soap([resumed], lr=0.02, precondition_every=3)
    second.load_state_dict(saved)
    for step in range(7, 12):
        resumed.grad = gradients(step)
        second.step()
    assert torch.equal(resumed, straight)


def test_training_uses_soap_for_networks_and_adam_for_latents() -> None:
    from coolchic.model.config import ModelConfig
    from coolchic.model.coolchic import CoolChicModel
    from coolchic.train.trainer import (
        NETWORK_LR_SCALE,
        make_optimizer,
        select_trained,
        set_learning_rate,
    )

    model = CoolChicModel(ModelConfig(arm_hidden=(8,)), 16, 24)
    networks, parameters = select_trained(model, ("latents", "arm", "upsampling", "synthesis"))
    optimizer = make_optimizer(networks, parameters, lr=1e-2)
    network_group, latent_group = optimizer.param_groups
    assert network_group["params"] == networks and network_group["precondition"]
    assert network_group["lr"] == pytest.approx(1e-2 * NETWORK_LR_SCALE)
    assert not latent_group["precondition"] and latent_group["lr"] == pytest.approx(1e-2)
    assert {id(p) for p in latent_group["params"]} == {
        id(p) for p in model.param_groups()["latents"]
    }
    set_learning_rate(optimizer, 1e-3)
    assert network_group["lr"] == pytest.approx(1e-3 * NETWORK_LR_SCALE)
    assert latent_group["lr"] == pytest.approx(1e-3)


def test_the_trainer_gives_the_networks_the_recipes_learning_rate_scale(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``fast`` trains its networks 2x faster than the latents, the longer recipes 4x; a
    rate-control continuation keeps its recipe's factor."""
    import numpy as np

    import coolchic.train.trainer as trainer_module
    from coolchic.io.frame import Frame
    from coolchic.model.config import ModelConfig
    from coolchic.model.coolchic import CoolChicModel
    from coolchic.train.loss import Target
    from coolchic.train.recipes import Phase, Recipe, Warmup, continuation, get_recipe

    assert get_recipe("fast").network_lr_scale == 2.0
    assert get_recipe("medium").network_lr_scale == 4.0
    assert continuation(get_recipe("fast"), 0.3).network_lr_scale == 2.0

    seen: list[float] = []
    real = trainer_module.make_optimizer

    def spy(networks, parameters, lr, network_lr_scale=trainer_module.NETWORK_LR_SCALE):  # type: ignore[no-untyped-def]
        optimizer = real(networks, parameters, lr, network_lr_scale)
        seen.append(optimizer.param_groups[0]["lr"] / lr)
        return optimizer

    monkeypatch.setattr(trainer_module, "make_optimizer", spy)
    rng = np.random.default_rng(0)
    planes = (rng.integers(0, 256, (16, 24)), *rng.integers(0, 256, (2, 8, 12)))
    frame = Frame.from_integer_planes(planes, fmt="yuv420", bit_depth=8)  # type: ignore[arg-type]
    recipe = Recipe(
        name="tiny",
        description="test",
        warmup=Warmup(stages=((1, 2),)),
        phases=(Phase(name="main", iterations=2, lr_start=1e-2, lr_end=1e-3, eval_every=2),),
        network_lr_scale=3.0,
    )
    trainer_module.Trainer(
        target=Target.from_frame(frame),
        lmbda=1e-3,
        recipe=recipe,
        model_factory=lambda _seed: CoolChicModel(ModelConfig(arm_hidden=(8,)), 16, 24),
    ).run()
    assert seen and all(scale == pytest.approx(3.0) for scale in seen)


def test_a_non_finite_gradient_does_not_raise() -> None:
    """The trainer detects a non-finite loss and recovers; the optimiser must not raise first."""
    weight = torch.nn.Parameter(torch.ones(3, 4))
    optimizer = Soap([weight], lr=0.01, precondition_every=1)
    weight.grad = torch.ones(3, 4)
    optimizer.step()
    weight.grad = torch.full((3, 4), float("nan"))
    optimizer.step()
    optimizer.step()
    assert optimizer.state[weight]["basis_left"].shape == (3, 3)


def test_zero_grad_and_a_foreign_state_are_handled() -> None:
    weight = torch.nn.Parameter(torch.ones(2, 3))
    optimizer = Soap([weight], lr=0.01)
    weight.grad = torch.ones(2, 3)
    optimizer.zero_grad(set_to_none=False)
    assert weight.grad is not None and not weight.grad.any()
    optimizer.zero_grad()
    assert weight.grad is None
    other = Soap([weight, torch.nn.Parameter(torch.ones(2))], lr=0.01)
    with pytest.raises(ValueError, match="other parameter groups"):
        optimizer.load_state_dict(other.state_dict())


def test_training_steps_do_not_import_torch_dynamo() -> None:
    """torch.optim.Optimizer imports torch._dynamo on first use: 2.5 s per encode process."""
    script = (
        "import sys\n"
        "from coolchic.model.config import ModelConfig\n"
        "from coolchic.model.coolchic import CoolChicModel\n"
        "from coolchic.train.trainer import make_optimizer, select_trained\n"
        "model = CoolChicModel(ModelConfig(), 8, 16)\n"
        "networks, parameters = select_trained(model, ('latents', 'arm', 'upsampling', "
        "'synthesis'))\n"
        "optimizer = make_optimizer(networks, parameters, lr=1e-2)\n"
        "for p in parameters:\n"
        "    p.grad = p.detach().clone()\n"
        "optimizer.step()\n"
        "optimizer.zero_grad()\n"
        "optimizer.load_state_dict(optimizer.state_dict())\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False"]
