"""Network-parameter quantisation and coding: round trips, orders, corrupt sections.

The steps are :mod:`coolchic.nnquant.params`, the codes :mod:`coolchic.bitstream.nn_params`:
together they are what the encoder writes and the decoder reads.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from coolchic.bitstream import expgolomb, rice
from coolchic.bitstream.constants import NN_GROUPS
from coolchic.bitstream.nn_params import GroupCode, decode_quantized, encode_quantized, fits
from coolchic.errors import BitstreamError, LimitExceeded
from coolchic.nnquant.params import QuantizedGroup, coded_flat, dequantize, quantize


def model_groups(seed: int = 0) -> dict[str, dict[str, list[np.ndarray]]]:
    rng = np.random.default_rng(seed)
    return {
        "arm": {
            "weight": [
                rng.normal(0, 0.1, (24, 24)),
                rng.normal(0, 0.1, (24, 24)),
                rng.normal(0, 0.2, (2, 24)),
            ],
            "bias": [rng.normal(0, 0.01, 24), rng.normal(0, 0.01, 24), rng.normal(0, 0.1, 2)],
        },
        "upsampling": {"weight": [rng.normal(0, 0.3, 4) for _ in range(6)]},
        "synthesis": {
            "weight": [
                rng.normal(0, 0.05, (40, 7, 1, 1)),
                rng.normal(0, 0.1, (3, 40, 1, 1)),
                rng.normal(0, 0.01, (3, 3, 3, 3)),
                rng.normal(0, 0.01, (3, 3, 3, 3)),
            ],
            "bias": [rng.normal(0, 0.01, 40), np.zeros(3), np.zeros(3), np.zeros(3)],
        },
    }


EXPS = {
    ("arm", "weight"): 8,
    ("arm", "bias"): 12,
    ("upsampling", "weight"): 10,
    ("synthesis", "weight"): 11,
    ("synthesis", "bias"): 14,
}


def quantized(
    groups: dict[str, dict[str, list[np.ndarray]]],
) -> dict[str, dict[str, list[np.ndarray]]]:
    """Every array quantised with its group's step in :data:`EXPS`."""
    return {
        m: {k: [quantize(a, EXPS[(m, k)]) for a in arrays] for k, arrays in kinds.items()}
        for m, kinds in groups.items()
    }


def shapes_of(
    groups: dict[str, dict[str, list[np.ndarray]]],
) -> dict[str, dict[str, list[tuple[int, ...]]]]:
    return {
        m: {k: [a.shape for a in arrays] for k, arrays in kinds.items()}
        for m, kinds in groups.items()
    }


def test_quantize_dequantize() -> None:
    values = np.array([0.5, -0.25, 1 / 3, 2.5, -2.5])
    q = quantize(values, 2)
    assert q.tolist() == [2, -1, 1, 10, -10]
    assert dequantize(q, 2).tolist() == [0.5, -0.25, 0.25, 2.5, -2.5]
    assert quantize(np.array([0.5, 1.5, -0.5]), 0).tolist() == [0, 2, 0]  # half to even
    assert quantize(torch.tensor([1.0, -1.0]), 3).tolist() == [8, -8]
    assert dequantize(q, 2).dtype == np.float32
    with pytest.raises(ValueError, match="finite"):
        quantize(np.array([np.nan]), 0)
    with pytest.raises(ValueError, match="exponent"):
        quantize(values, 32)
    with pytest.raises(TypeError):
        dequantize(np.array([0.5]), 0)


def test_range_check_and_usable_steps() -> None:
    assert fits(np.array([2**15, -(2**15)])) and not fits(np.array([2**15 + 1]))
    assert fits(np.zeros(0, np.int64))
    values = np.array([1.0, -0.7])
    usable = [exp for exp in range(20) if fits(quantize(values, exp))]  # the search's test
    assert usable == list(range(16))  # 2^15 fits, 2^16 does not


def test_round_trip_and_best_codes() -> None:
    groups = model_groups()
    q = quantized(groups)
    data, codes = encode_quantized(q)
    assert set(codes) == set(NN_GROUPS) and codes[("upsampling", "bias")] == GroupCode()
    decoded_q = decode_quantized(data, shapes_of(groups), codes)
    total_bits = 0
    for module, kinds in q.items():
        for kind, arrays in kinds.items():
            for sent, back in zip(arrays, decoded_q[module][kind], strict=True):
                assert back.dtype == np.int64 and np.array_equal(sent, back)
            flat = np.concatenate([a.ravel() for a in arrays])
            code = codes[(module, kind)]
            assert code.n_bits(flat) == min(
                expgolomb.best_order(flat)[1], rice.best_parameter(flat)[1]
            )
            # The code and the bits the step search costs a group at.
            zeros = tuple(np.zeros_like(a) for a in arrays)
            group = QuantizedGroup.best_coded(
                (module, kind), (), tuple(arrays), EXPS[(module, kind)], zeros
            )
            assert group.code == code and group.n_bits == code.n_bits(flat)
            np.testing.assert_array_equal(coded_flat(group.integers, zeros), flat)
            total_bits += group.n_bits
    assert len(data) == (total_bits + 7) // 8
    for module, kinds in groups.items():
        for kind, arrays in kinds.items():
            exp = EXPS[(module, kind)]
            for original, back in zip(arrays, decoded_q[module][kind], strict=True):
                value = dequantize(back, exp)
                assert value.dtype == np.float32 and value.shape == original.shape
                assert np.abs(value - original).max() <= 2.0 ** -(exp + 1) + 1e-7


def test_empty_groups_and_errors() -> None:
    data, codes = encode_quantized({})
    assert data == b"" and all(code == GroupCode() for code in codes.values())
    assert decode_quantized(b"", {}, codes) == {}
    with pytest.raises(ValueError, match="modules"):
        encode_quantized({"ifce": {"weight": [np.zeros(3, np.int64)]}})
    with pytest.raises(ValueError, match="kinds"):
        encode_quantized({"arm": {"scale": [np.zeros(3, np.int64)]}})
    with pytest.raises(ValueError, match="32768"):
        encode_quantized({"arm": {"weight": [np.array([2**15 + 1])]}})
    with pytest.raises(ValueError, match="32768"):
        encode_quantized({"arm": {"weight": [quantize(np.array([1.0]), 16)]}})


def test_corrupt_sections_raise_bitstream_errors() -> None:
    groups = model_groups(1)
    data, codes = encode_quantized(quantized(groups))
    shapes = shapes_of(groups)
    for end in range(0, len(data), 7):
        with pytest.raises(BitstreamError):
            decode_quantized(data[:end], shapes, codes)
    with pytest.raises(BitstreamError, match="left over"):
        decode_quantized(data + b"\x00", shapes, codes)
    with pytest.raises(LimitExceeded):
        decode_quantized(data, {"synthesis": {"weight": [(128, 128, 15, 15)]}}, codes)
    rng = np.random.default_rng(0)
    for _ in range(200):
        noisy = bytearray(data)
        noisy[rng.integers(len(noisy))] ^= int(rng.integers(1, 256))
        with contextlib.suppress(BitstreamError):
            decode_quantized(bytes(noisy), shapes, codes)
    # One parameter, q = 0 at order 0 -> "1" then seven padding bits that must be zero.
    assert decode_quantized(b"\x80", {"arm": {"bias": [(1,)]}}, {})["arm"]["bias"][0].tolist() == [
        0
    ]
    with pytest.raises(BitstreamError, match="padding"):
        decode_quantized(b"\x81", {"arm": {"bias": [(1,)]}}, {})
