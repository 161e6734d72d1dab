"""Synthesis grammar, ARM widths and ModelConfig validation."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coolchic.model.config import (
    DEFAULT_SYNTHESIS,
    LayerSpec,
    ModelConfig,
    format_arm,
    format_synthesis,
    parse_arm,
    parse_synthesis,
)


def test_default_synthesis_parses_to_the_v2_layers() -> None:
    layers = parse_synthesis(DEFAULT_SYNTHESIS)
    assert layers == (
        LayerSpec(40, 1, "linear", "relu"),
        LayerSpec(3, 1, "linear", "relu"),
        LayerSpec(3, 3, "residual", "relu"),
        LayerSpec(3, 3, "residual", "none"),
    )
    assert format_synthesis(layers) == DEFAULT_SYNTHESIS
    assert ModelConfig().synthesis == layers


def test_x_stands_for_the_output_channels() -> None:
    layers = parse_synthesis("48-1-linear-relu,X-1-linear-none,X-3-residual-relu", out_channels=3)
    assert [layer.out_channels for layer in layers] == [48, 3, 3]
    assert parse_synthesis("x-1-linear-none", out_channels=1)[0].out_channels == 1


def test_whitespace_around_fields_is_accepted() -> None:
    assert parse_synthesis(" 8-1-linear-relu , 3-3-residual-none ") == (
        LayerSpec(8, 1, "linear", "relu"),
        LayerSpec(3, 3, "residual", "none"),
    )


_layer = st.builds(
    LayerSpec,
    out_channels=st.integers(1, 512),
    kernel=st.sampled_from([1, 3, 5, 7, 9, 15]),
    kind=st.sampled_from(["linear", "residual"]),
    nonlinearity=st.sampled_from(["relu", "none"]),
)


@given(st.lists(_layer, min_size=1, max_size=16))
def test_format_parse_round_trip(layers: list[LayerSpec]) -> None:
    assert parse_synthesis(format_synthesis(layers)) == tuple(layers)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("", "synthesis"),
        ("40-1-linear-relu,", "synthesis layer"),
        ("40-1-linear", "synthesis layer"),
        ("40-1-linear-relu-x", "synthesis layer"),
        ("40-2-linear-relu", "synthesis kernel"),
        ("40-0-linear-relu", "synthesis kernel"),
        ("40-17-linear-relu", "synthesis kernel"),
        ("0-1-linear-relu", "synthesis out_channels"),
        ("-3-1-linear-relu", "synthesis layer"),
        ("a-1-linear-relu", "synthesis out_channels"),
        ("4.5-1-linear-relu", "synthesis out_channels"),
        ("40-1-attention-relu", "synthesis layer kind"),
        ("40-1-linear-leakyrelu", "synthesis non-linearity"),
        ("999-1-linear-relu", "synthesis out_channels"),
        (",".join(["3-1-linear-relu"] * 17), "synthesis"),
    ],
)
def test_bad_synthesis_text_names_the_field(text: str, field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}"):
        parse_synthesis(text)


def test_layer_spec_validates_directly() -> None:
    with pytest.raises(ValueError, match="expected one of"):
        LayerSpec(3, 1, "conv", "relu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="odd"):
        LayerSpec(3, 4, "linear", "relu")


def test_arm_widths_parse_and_format() -> None:
    assert parse_arm("24,24") == (24, 24)
    assert parse_arm(" 16 , 8 ") == (16, 8)
    assert parse_arm("") == ()
    assert format_arm((24, 24)) == "24,24"
    for bad in ("24,", "a", "0", "24,-1", "257", ",".join(["8"] * 9)):
        with pytest.raises(ValueError, match=r"^arm_hidden|^ARM hidden width"):
            parse_arm(bad)


def test_default_config_is_valid_and_derived_values() -> None:
    config = ModelConfig()
    assert config.n_contexts == 24
    assert dataclasses.replace(config, n_ctx_rowcol=2).n_contexts == 12
    assert config.synthesis_text == DEFAULT_SYNTHESIS
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.n_grids = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"n_grids": 0}, "n_grids"),
        ({"n_grids": 11}, "n_grids"),
        ({"n_ctx_rowcol": 0}, "n_ctx_rowcol"),
        ({"n_ctx_rowcol": 5}, "n_ctx_rowcol"),
        ({"arm_hidden": (24, 0)}, "arm_hidden"),
        ({"arm_hidden": [24, 24]}, "arm_hidden"),
        ({"out_channels": 0}, "out_channels"),
        ({"upsampling_kernel": 7}, "upsampling_kernel"),
        ({"upsampling_kernel": 2}, "upsampling_kernel"),
        ({"upsampling_kernel": 18}, "upsampling_kernel"),
        ({"preconcat_kernel": 4}, "preconcat_kernel"),
        ({"preconcat_kernel": -1}, "preconcat_kernel"),
        ({"latent_gain": 0.0}, "latent_gain"),
        ({"latent_gain": float("nan")}, "latent_gain"),
        ({"synthesis": ()}, "synthesis"),
        ({"out_channels": 1}, "synthesis last layer out_channels"),
        ({"synthesis": parse_synthesis("8-1-residual-relu,3-1-linear-none")}, "synthesis layer 0"),
    ],
)
def test_bad_config_names_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}"):
        ModelConfig(**changes)  # type: ignore[arg-type]


def test_residual_layer_must_keep_its_width() -> None:
    with pytest.raises(ValueError, match="residual layer with out_channels == in_channels == 8"):
        ModelConfig(synthesis=parse_synthesis("8-1-linear-relu,3-3-residual-none"))
    # The first layer sees n_grids channels.
    ModelConfig(n_grids=3, synthesis=parse_synthesis("3-3-residual-relu,3-1-linear-none"))


def test_preconcat_can_be_disabled_and_small_kernels_accepted() -> None:
    config = ModelConfig(preconcat_kernel=0, upsampling_kernel=4, n_grids=1)
    assert config.preconcat_kernel == 0
