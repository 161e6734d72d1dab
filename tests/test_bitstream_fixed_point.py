"""Integer ARM: agreement with a float64 reference, exact kernels, the shipped table."""

from __future__ import annotations

import hashlib
import math
from importlib import resources

import numpy as np
import pytest
import torch

from coolchic.bitstream.constants import MU_SCALE_TABLE_FILE, MU_TABLE_SIZE, SCALE_TABLE_SIZE
from coolchic.bitstream.fixed_point import (
    FixedPointArm,
    QuantizedLayer,
    log_scale_from_index,
    mu_from_index,
    mu_scale_table,
)
from coolchic.errors import LimitExceeded

#: sha256 of the shipped table: regenerating it silently would change every decoded stream.
TABLE_SHA256 = "b435a0c0d1cbcfb0dd5bd8a7748f64cee97de2027ca4edd87a0a5d1976737298"


def _q(values: np.ndarray, exp: int) -> np.ndarray:
    return np.clip(np.round(values * 2**exp), -(2**15), 2**15).astype(np.int64)


def random_layers(
    rng: np.random.Generator,
    n_contexts: int,
    hidden: tuple[int, ...],
    *,
    std: float = 0.1,
    weight_exp: int = 8,
    bias_exp: int = 12,
    output_bias: tuple[float, float] = (0.0, 4.0),
) -> tuple[list[QuantizedLayer], QuantizedLayer]:
    layers = []
    width = n_contexts
    for out in hidden:
        weight = _q(rng.normal(0, std, (out, width)), weight_exp)
        bias = _q(rng.normal(0, std, out), bias_exp)
        layers.append(QuantizedLayer(weight, bias, weight_exp, bias_exp))
        width = out
    weight = _q(rng.normal(0, std / 2, (2, width)), weight_exp)
    bias = _q(np.array(output_bias), bias_exp)
    return layers, QuantizedLayer(weight, bias, weight_exp, bias_exp)


def float_reference(
    hidden: list[QuantizedLayer],
    output: QuantizedLayer,
    contexts: np.ndarray,
    stabiliser: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The float model: residual hidden layers when square, ReLU, then (μ, s − 4) clamped,
    with ``contexts @ stabiliser.T`` added to the output when there is one."""
    x = contexts.astype(np.float64)
    for layer in hidden:
        weight, bias = layer.to_float()
        y = x @ weight.T + bias
        if weight.shape[0] == weight.shape[1]:
            y = y + x
        x = np.maximum(y, 0.0)
    weight, bias = output.to_float()
    out = x @ weight.T + bias
    if stabiliser is not None:
        out = out + contexts.astype(np.float64) @ stabiliser.T
    return np.clip(out[:, 0], -64, 64 - 1 / 256), np.clip(out[:, 1] - 4, -5, 5)


def test_shipped_table_is_pinned_and_matches_the_formulas() -> None:
    raw = resources.files("coolchic.bitstream").joinpath(MU_SCALE_TABLE_FILE).read_bytes()
    assert hashlib.sha256(raw).hexdigest() == TABLE_SHA256
    mu, scale = mu_scale_table()
    assert mu.dtype == scale.dtype == np.float64
    assert mu.shape == (MU_TABLE_SIZE,) == (32768,) and scale.shape == (SCALE_TABLE_SIZE,) == (
        2561,
    )
    assert np.array_equal(mu, -64 + np.arange(32768) / 256)  # exact
    expected = np.array([math.exp(-5 + j / 256) for j in range(2561)])
    assert np.allclose(scale, expected, rtol=2**-23, atol=0)
    assert np.array_equal(scale, expected.astype(np.float32).astype(np.float64))
    assert not mu.flags.writeable and not scale.flags.writeable


@pytest.mark.parametrize("hidden", [(), (24,), (24, 24), (16, 24, 24)])
def test_agrees_with_a_float64_reference(hidden: tuple[int, ...]) -> None:
    rng = np.random.default_rng(len(hidden))
    layers, output = random_layers(rng, 24, hidden, output_bias=(0.3, 3.0))
    arm = FixedPointArm.from_quantized(layers, output)
    contexts = rng.integers(-64, 64, (20_000, 24))
    contexts[:100] = rng.integers(-3, 4, (100, 24))
    mu_index, scale_index = arm(contexts)
    mu_ref, log_scale_ref = float_reference(layers, output, contexts)
    # The final floor to 1/256 dominates; the hidden floors to 2^-16 add far less than 2^-10.
    mu_error = mu_ref - mu_from_index(mu_index)
    scale_error = log_scale_ref - log_scale_from_index(scale_index)
    for error in (mu_error, scale_error):
        assert error.min() > -(2**-10) and error.max() < 1 / 256 + 2**-10
    assert (scale_index > 0).mean() > 0.05 and (scale_index < 2560).mean() > 0.05
    mu, scale = arm.laplace_params(contexts[:50])
    table_mu, table_scale = mu_scale_table()
    assert np.array_equal(mu, table_mu[mu_index[:50]])
    assert np.array_equal(scale, table_scale[scale_index[:50]])


@pytest.mark.parametrize("hidden", [(), (8,), (12, 12)])
def test_the_stabiliser_agrees_with_the_reference_in_both_kernels(hidden: tuple[int, ...]) -> None:
    rng = np.random.default_rng(40 + len(hidden))
    layers, output = random_layers(rng, 12, hidden, output_bias=(0.3, 3.0))
    weights = _q(rng.normal(0, 0.05, (2, 12)), 8)
    arm = FixedPointArm.from_quantized(layers, output, stabiliser=(weights, 8))
    exact = FixedPointArm.from_quantized(
        layers, output, stabiliser=(weights, 8), float_kernel=False
    )
    plain = FixedPointArm.from_quantized(layers, output)
    assert arm.uses_float_kernel and arm.accumulator_bound >= plain.accumulator_bound
    assert arm.accumulator_bound > plain.accumulator_bound or hidden  # the output layer is widest
    contexts = rng.integers(-64, 65, (20_000, 12))
    contexts[0], contexts[1] = 64, -64
    mu_index, scale_index = arm(contexts)
    for a, b in zip((mu_index, scale_index), exact(contexts), strict=True):
        assert np.array_equal(a, b)
    assert not np.array_equal(mu_index, plain(contexts)[0])
    stabiliser = np.ldexp(weights.astype(np.float64), -8)
    mu_ref, log_scale_ref = float_reference(layers, output, contexts, stabiliser)
    for error in (
        mu_ref - mu_from_index(mu_index),
        log_scale_ref - log_scale_from_index(scale_index),
    ):
        assert error.min() > -(2**-10) and error.max() < 1 / 256 + 2**-10
    with pytest.raises(ValueError, match="stabiliser"):
        FixedPointArm.from_quantized(layers, output, stabiliser=(weights[:, :5], 8))


def test_folded_constants() -> None:
    """A zero network gives μ = 0 and b = exp(−4): the −4 offset lives in the output bias."""
    zero_hidden = QuantizedLayer(np.zeros((24, 24), np.int64), np.zeros(24, np.int64), 8, 8)
    zero_output = QuantizedLayer(np.zeros((2, 24), np.int64), np.zeros(2, np.int64), 8, 8)
    arm = FixedPointArm.from_quantized([zero_hidden], zero_output)
    mu_index, scale_index = arm(np.full((3, 24), 5))
    assert mu_index.tolist() == [64 * 256] * 3
    assert scale_index.tolist() == [256] * 3  # −5 + 256/256 = −4
    # Residual: a zero square layer is the identity (then ReLU); output reads context 0.
    picker = np.zeros((2, 24), np.int64)
    picker[0, 0] = 256  # weight 1.0 at step 2^-8
    arm = FixedPointArm.from_quantized([zero_hidden, zero_hidden], (picker, [0, 0], 8, 8))
    mu_index, _ = arm(np.array([[7] + [0] * 23, [-7] + [0] * 23, [63] + [0] * 23]))
    assert mu_from_index(mu_index).tolist() == [7.0, 0.0, 63.0]  # ReLU removed −7


def test_float_and_integer_kernels_are_identical() -> None:
    rng = np.random.default_rng(5)
    contexts = rng.integers(-64, 65, (5_000, 24))
    contexts[0], contexts[1] = 64, -64
    kernels = []
    for std in (0.05, 0.5, 4.0, 60.0):
        layers, output = random_layers(rng, 24, (24, 24), std=std, weight_exp=6, bias_exp=10)
        try:
            fast = FixedPointArm.from_quantized(layers, output)
        except LimitExceeded:
            continue
        kernels.append(fast.uses_float_kernel)
        exact = FixedPointArm.from_quantized(layers, output, float_kernel=False)
        assert not exact.uses_float_kernel
        assert fast.uses_float_kernel == (fast.accumulator_bound < 2**53)
        for a, b in zip(fast(contexts), exact(contexts), strict=True):
            assert np.array_equal(a, b)
    assert True in kernels and False in kernels  # both kernels were exercised


def test_near_the_exactness_bound() -> None:
    """Weights chosen so the bound sits just under 2^53: both kernels still agree."""
    rng = np.random.default_rng(9)
    weight = np.full((2, 24), 2**15, np.int64)
    for exp in range(0, 17):
        arm = FixedPointArm.from_quantized([], (weight, [0, 0], exp, 0))
        if arm.uses_float_kernel:
            break
    assert arm.accumulator_bound > 2**50
    exact = FixedPointArm.from_quantized([], (weight, [0, 0], exp, 0), float_kernel=False)
    contexts = np.concatenate(
        [np.full((1, 24), 64), np.full((1, 24), -64), rng.integers(-64, 65, (500, 24))]
    )
    for a, b in zip(arm(contexts), exact(contexts), strict=True):
        assert np.array_equal(a, b)


def test_identical_across_thread_counts_and_for_torch_inputs() -> None:
    rng = np.random.default_rng(2)
    layers, output = random_layers(rng, 24, (24, 24))
    contexts = rng.integers(-64, 64, (4_000, 24))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = FixedPointArm.from_quantized(layers, output)(torch.from_numpy(contexts))
        torch.set_num_threads(2)
        layers_t = [
            (torch.from_numpy(q.weight), torch.from_numpy(q.bias), q.weight_exp, q.bias_exp)
            for q in layers
        ]
        output_t = (torch.from_numpy(output.weight), torch.from_numpy(output.bias), 8, 12)
        double = FixedPointArm.from_quantized(layers_t, output_t)(torch.from_numpy(contexts))
    finally:
        torch.set_num_threads(before)
    for a, b in zip(single, double, strict=True):
        assert isinstance(a, torch.Tensor) and a.dtype == torch.int64
        assert torch.equal(a, b)


def test_refuses_floats_bad_shapes_and_huge_weights() -> None:
    rng = np.random.default_rng(3)
    layers, output = random_layers(rng, 12, (12,))
    with pytest.raises(TypeError, match="integer"):
        FixedPointArm.from_quantized([(layers[0].weight * 1.0, layers[0].bias, 8, 12)], output)
    with pytest.raises(TypeError, match="integer"):
        FixedPointArm.from_quantized(
            [(torch.zeros(12, 12), torch.zeros(12, dtype=torch.int64), 8, 12)], output
        )
    arm = FixedPointArm.from_quantized(layers, output)
    with pytest.raises(TypeError, match="integer"):
        arm(np.zeros((2, 12)))
    with pytest.raises(TypeError, match="integer"):
        arm(torch.zeros(2, 12))
    with pytest.raises(ValueError, match="shape"):
        arm(np.zeros((2, 11), np.int64))
    with pytest.raises(ValueError, match="contexts"):
        arm(np.full((2, 12), 65))
    with pytest.raises(ValueError, match="weight_exp"):
        FixedPointArm.from_quantized([], (output.weight, output.bias, 17, 12))
    with pytest.raises(ValueError, match="2 rows"):
        FixedPointArm.from_quantized([], (np.zeros((3, 12), np.int64), np.zeros(3, np.int64), 8, 8))
    with pytest.raises(ValueError, match="layer 1"):
        FixedPointArm.from_quantized(
            [(np.zeros((12, 12), np.int64), np.zeros(12, np.int64), 8, 8)],
            (np.zeros((2, 10), np.int64), np.zeros(2, np.int64), 8, 8),
        )
    with pytest.raises(LimitExceeded, match="32768"):
        FixedPointArm.from_quantized([], (np.full((2, 12), 2**15 + 1), [0, 0], 8, 8))
    big = np.full((24, 24), 2**15, np.int64)
    with pytest.raises(LimitExceeded, match="accumulator"):
        FixedPointArm.from_quantized(
            [(big, np.zeros(24, np.int64), 0, 0)] * 3, (np.full((2, 24), 2**15), [0, 0], 0, 0)
        )
