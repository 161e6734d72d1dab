"""MAC per pixel and parameter counts."""

from __future__ import annotations

import dataclasses

import pytest

from coolchic.model.complexity import mac_per_pixel, parameter_counts
from coolchic.model.config import ModelConfig, parse_synthesis
from coolchic.model.coolchic import CoolChicModel


def test_default_config_lands_near_2200_mac_per_pixel() -> None:
    macs = mac_per_pixel(ModelConfig(), 512, 768)
    assert 2100 <= macs.total <= 2300
    # ARM: (24·24 + 24·24 + 24·2) MAC per latent × ≈ 4/3 latents per pixel.
    assert macs.arm == pytest.approx(1200 * 4 / 3, rel=1e-3)
    # Synthesis: 7·40 + 40·3 + 3·3·9 + 3·3·9.
    assert macs.synthesis == 562
    # Upsampling: ≈ 6·(4·½ + 4) on the last level, and so on, plus 2·7 per pixel of each grid.
    assert 55 <= macs.upsampling <= 75
    assert macs.total == pytest.approx(macs.arm + macs.upsampling + macs.synthesis)


def test_mac_per_pixel_scales_sensibly() -> None:
    config = ModelConfig()
    small = mac_per_pixel(config, 128, 192)
    large = mac_per_pixel(config, 1080, 1920)
    assert large.total == pytest.approx(small.total, rel=0.01)
    fewer_contexts = mac_per_pixel(
        dataclasses.replace(config, n_ctx_rowcol=2, arm_hidden=(12, 12)), 512, 768
    )
    assert fewer_contexts.arm == pytest.approx((12 * 12 * 2 + 12 * 2) * 4 / 3, rel=1e-3)
    wider = dataclasses.replace(
        config, synthesis=parse_synthesis("64-1-linear-relu,3-1-linear-relu,3-3-residual-none")
    )
    assert mac_per_pixel(wider, 512, 768).synthesis == 7 * 64 + 64 * 3 + 81
    no_preconcat = mac_per_pixel(dataclasses.replace(config, preconcat_kernel=0), 512, 768)
    assert no_preconcat.upsampling < small.upsampling
    # Tiny images pay for the padding of the coarse grids (every grid is 1x1).
    assert mac_per_pixel(config, 1, 1).arm == 7 * 1200
    # Two coarser contexts widen the ARM's first layer: 2 × 24 more MAC per latent.
    coarser = mac_per_pixel(dataclasses.replace(config, coarser_contexts=2), 1, 1)
    assert coarser.arm == 7 * (1200 + 2 * 24)


def test_parameter_counts_match_the_model() -> None:
    config = ModelConfig()
    counts = parameter_counts(config, 34, 66)
    model = CoolChicModel(config, 34, 66)
    for name, params in model.param_groups().items():
        assert getattr(counts, name) == sum(p.numel() for p in params), name
    assert counts.arm == 24 * 25 * 2 + 24 * 2 + 2
    coarser = dataclasses.replace(config, coarser_contexts=3)
    arm = CoolChicModel(coarser, 34, 66).arm
    assert parameter_counts(coarser, 34, 66).arm == sum(p.numel() for p in arm.parameters())
    assert parameter_counts(coarser, 34, 66).arm == counts.arm + 3 * 24
    assert counts.upsampling == 6 * (4 + 4)
    assert counts.networks == counts.arm + counts.upsampling + counts.synthesis


def test_the_stabilisers_are_counted() -> None:
    config = ModelConfig()
    stable = dataclasses.replace(config, arm_stabiliser=True, synthesis_stabiliser=True)
    model = CoolChicModel(stable, 34, 66)
    counts, before = parameter_counts(stable, 34, 66), parameter_counts(config, 34, 66)
    assert counts.synthesis == sum(p.numel() for p in model.synthesis.parameters())
    assert counts.arm == sum(p.numel() for p in model.arm.parameters())
    assert counts.synthesis == before.synthesis + 7 * 3
    assert counts.arm == before.arm + 24 * 2
    # one multiply-add per weight and pixel (synthesis) or latent (ARM)
    macs, plain = mac_per_pixel(stable, 34, 66), mac_per_pixel(config, 34, 66)
    assert macs.synthesis == plain.synthesis + 21
    n_latents = sum(-(-34 // 2**i) * -(-66 // 2**i) for i in range(7))
    assert macs.arm == pytest.approx(plain.arm + 48 * n_latents / (34 * 66))
