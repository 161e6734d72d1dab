"""The container of the network parameters: what the encoder writes, the decoder reads back."""

from __future__ import annotations

import numpy as np
import pytest

from coolchic.bitstream.constants import NN_GROUPS
from coolchic.bitstream.fixed_point import FixedPointArm, QuantizedLayer
from coolchic.bitstream.header import GroupCoding
from coolchic.model.config import ModelConfig, parse_synthesis
from coolchic.nnquant.params import (
    QuantizedGroup,
    QuantizedNetworks,
    dequantize,
    parameter_layout,
    predicted_integers,
)

CONFIG = ModelConfig(
    n_grids=4,
    n_ctx_rowcol=2,
    arm_hidden=(8, 8),
    synthesis=parse_synthesis("8-1-linear-relu,8-3-residual-relu,X-1-linear-none"),
    upsampling_kernel=8,
    preconcat_kernel=5,
)
EXPS = {
    ("arm", "weight"): 8,
    ("arm", "bias"): 12,
    ("upsampling", "weight"): 7,
    ("upsampling", "bias"): 0,
    ("synthesis", "weight"): 9,
    ("synthesis", "bias"): 10,
}


def random_networks(seed: int = 0) -> QuantizedNetworks:
    """Groups as the step search leaves them: integers near their prediction."""
    rng = np.random.default_rng(seed)
    groups = []
    for key, specs in parameter_layout(CONFIG).items():
        if not specs:
            groups.append(QuantizedGroup.empty(key))
            continue
        predictions = tuple(predicted_integers(CONFIG, *key, EXPS[key]))
        integers = tuple(p + rng.integers(-20, 21, p.shape) for p in predictions)
        names = tuple(name for name, _ in specs)
        groups.append(QuantizedGroup.best_coded(key, names, integers, EXPS[key], predictions))
    return QuantizedNetworks(tuple(groups))


def test_the_networks_decode_as_they_were_written() -> None:
    networks = random_networks()
    data, codes = networks.encode()
    assert len(data) == (networks.n_bits + 7) // 8
    coding = tuple(
        GroupCoding(group.exponent, *codes[key])
        for key, group in zip(NN_GROUPS, networks, strict=True)
    )
    back = QuantizedNetworks.decode(data, CONFIG, coding)
    for sent, read in zip(networks, back, strict=True):
        assert (read.module, read.kind, read.names) == (sent.module, sent.kind, sent.names)
        assert (read.exponent, read.code, read.n_bits) == (sent.exponent, sent.code, sent.n_bits)
        for a, b in zip(
            sent.integers + sent.predictions, read.integers + read.predictions, strict=True
        ):
            np.testing.assert_array_equal(a, b)
        for name, value in read.values().items():
            q = read.integers[read.names.index(name)]
            np.testing.assert_array_equal(value, dequantize(q, read.exponent).astype(np.float64))
    assert back[("upsampling", "bias")].integers == ()
    assert any(p.any() for p in back[("upsampling", "weight")].predictions)


def test_the_arm_is_the_two_arm_groups() -> None:
    networks = random_networks(1)
    weights, biases = networks[("arm", "weight")], networks[("arm", "bias")]
    layers = [
        QuantizedLayer(w, b, weights.exponent, biases.exponent)
        for w, b in zip(weights.integers, biases.integers, strict=True)
    ]
    expected = FixedPointArm.from_quantized(layers[:-1], layers[-1])
    contexts = np.random.default_rng(2).integers(-64, 65, (50, CONFIG.n_contexts))
    for found, wanted in zip(networks.arm()(contexts), expected(contexts), strict=True):
        np.testing.assert_array_equal(found, wanted)


def test_the_container_holds_the_six_groups_in_coding_order() -> None:
    groups = random_networks().groups
    assert [(g.module, g.kind) for g in groups] == list(NN_GROUPS)
    with pytest.raises(ValueError, match="in that order"):
        QuantizedNetworks(groups[1:])
    with pytest.raises(ValueError, match="in that order"):
        QuantizedNetworks((groups[1], groups[0], *groups[2:]))
    empty = QuantizedNetworks(tuple(QuantizedGroup.empty(key) for key in NN_GROUPS))
    with pytest.raises(ValueError, match="ARM"):
        empty.arm()
