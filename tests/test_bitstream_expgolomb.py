"""Signed exp-Golomb: identity, exact lengths, known codes, corrupt input, speed."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from coolchic.bitstream import expgolomb
from coolchic.bitstream.bits import BitReader, BitWriter
from coolchic.errors import BitstreamError


def _reference_code(q: int, k: int) -> str:
    """Textbook order-k exp-Golomb of the signed-to-unsigned mapped value, as a bit string."""
    u = -2 * q if q <= 0 else 2 * q - 1
    binary = bin(u + (1 << k))[2:]
    return "0" * (len(binary) - 1 - k) + binary


def _round_trip(values: np.ndarray, k: int) -> np.ndarray:
    writer = BitWriter()
    writer.write_bits(expgolomb.encode(values, k))
    reader = BitReader(writer.to_bytes())
    decoded = expgolomb.decode(reader, values.size, k)
    assert reader.position == expgolomb.n_bits(values, k)
    return decoded


@settings(max_examples=200, deadline=None)
@given(
    arrays(np.int64, st.integers(0, 300), elements=st.integers(-(2**15), 2**15)),
    st.integers(0, 12),
)
def test_any_integers_round_trip_and_n_bits_is_exact(values: np.ndarray, k: int) -> None:
    bits = expgolomb.encode(values, k)
    assert bits.size == expgolomb.n_bits(values, k)
    assert "".join(map(str, bits.tolist())) == "".join(_reference_code(int(q), k) for q in values)
    assert np.array_equal(_round_trip(values, k), values)


def test_known_codes() -> None:
    # Order 0: 0 -> 1, 1 -> 010, -1 -> 011, 2 -> 00100; order 2: 0 -> 100.
    assert expgolomb.encode(np.array([0, 1, -1, 2]), 0).tolist() == [
        1,
        0,
        1,
        0,
        0,
        1,
        1,
        0,
        0,
        1,
        0,
        0,
    ]
    assert expgolomb.encode(np.array([0]), 2).tolist() == [1, 0, 0]
    assert expgolomb.to_unsigned(np.array([0, 1, -1, 2, -2])).tolist() == [0, 1, 2, 3, 4]


def test_extreme_values_round_trip() -> None:
    values = np.array([2**30, -(2**30), 0, 1, -1], dtype=np.int64)
    for k in (0, 12):
        assert np.array_equal(_round_trip(values, k), values)
    with pytest.raises(ValueError, match="2\\^30"):
        expgolomb.encode(np.array([2**30 + 1]), 0)
    with pytest.raises(TypeError):
        expgolomb.encode(np.array([0.5]), 0)
    with pytest.raises(ValueError, match="order"):
        expgolomb.encode(np.array([1]), 13)


@settings(max_examples=50, deadline=None)
@given(arrays(np.int64, st.integers(0, 200), elements=st.integers(-3000, 3000)))
def test_best_order_is_the_minimum(values: np.ndarray) -> None:
    k, bits = expgolomb.best_order(values)
    lengths = [expgolomb.n_bits(values, order) for order in range(13)]
    assert bits == min(lengths) and k == lengths.index(bits)


def test_corrupt_input_raises_bitstream_error() -> None:
    with pytest.raises(BitstreamError, match=r"leading zeros|ran out"):
        expgolomb.decode(BitReader(bytes(64)), 3, 0)  # only zeros: no code ever ends
    with pytest.raises(BitstreamError, match="ran out"):
        expgolomb.decode(BitReader(b"\x01"), 2, 0)  # 0000000 1 -> first code needs 7 more bits
    # 40 zeros then ones: more leading zeros than any accepted value produces.
    with pytest.raises(BitstreamError, match=r"leading zeros|ran out"):
        expgolomb.decode(BitReader(bytes(5) + b"\xff" * 20), 1, 0)
    # 33 zeros in the second code, the first code being long enough to leave room for it.
    writer = BitWriter()
    writer.write_bits(expgolomb.encode(np.array([2**30]), 0))
    writer.write_uint(0, 33)
    writer.write_uint((1 << 34) - 1, 34)
    with pytest.raises(BitstreamError, match="leading zeros"):
        expgolomb.decode(BitReader(writer.to_bytes()), 2, 0)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64), st.integers(0, 200), st.integers(0, 12))
def test_random_bytes_decode_or_raise_bitstream_error(data: bytes, count: int, k: int) -> None:
    start = time.perf_counter()
    try:
        values = expgolomb.decode(BitReader(data), count, k)
    except BitstreamError:
        pass
    else:
        assert values.shape == (count,)
    assert time.perf_counter() - start < 1.0


def test_fifty_thousand_parameters_are_fast() -> None:
    values = np.round(np.random.default_rng(0).laplace(0, 20, 50_000)).astype(np.int64)
    start = time.perf_counter()
    k, _ = expgolomb.best_order(values)
    assert np.array_equal(_round_trip(values, k), values)
    assert time.perf_counter() - start < 1.0  # ~35 ms on the development machine


# ---------------------------------------------------------------------------------------------
# Scalar unsigned codes ue(v) of the header


@pytest.mark.parametrize(
    ("value", "code"),
    [(0, "1"), (1, "010"), (2, "011"), (3, "00100"), (6, "00111"), (7, "0001000")],
)
def test_ue_known_codes(value: int, code: str) -> None:
    writer = BitWriter()
    expgolomb.write_ue(writer, value)
    assert writer.n_bits == len(code) == expgolomb.ue_bits(value)
    assert BitReader(writer.to_bytes()).read_uint(len(code)) == int(code, 2)


@given(st.lists(st.integers(0, expgolomb.MAX_UE_VALUE), max_size=20))
def test_ue_round_trips(values: list[int]) -> None:
    writer = BitWriter()
    for value in values:
        expgolomb.write_ue(writer, value)
    reader = BitReader(writer.to_bytes())
    assert [expgolomb.read_ue(reader) for _ in values] == values
    assert reader.position == sum(expgolomb.ue_bits(v) for v in values)


@pytest.mark.parametrize("value", [-1, expgolomb.MAX_UE_VALUE + 1, True, 2.0])
def test_ue_refuses_what_no_reader_takes(value: object) -> None:
    with pytest.raises(ValueError, match="ue value"):
        expgolomb.write_ue(BitWriter(), value)  # type: ignore[arg-type]


def test_ue_refuses_long_prefixes_and_truncation() -> None:
    start = time.perf_counter()
    with pytest.raises(BitstreamError, match="width: exp-Golomb code with more than 32 leading"):
        expgolomb.read_ue(BitReader(bytes(1 << 20)), "width")
    assert time.perf_counter() - start < 0.1  # stopped after 33 bits, not walked to the end
    with pytest.raises(BitstreamError, match="height: expected"):
        expgolomb.read_ue(BitReader(b"\x00"), "height")  # the prefix runs off the end
    with pytest.raises(BitstreamError, match="nn_bytes: expected 7 more bits"):
        expgolomb.read_ue(BitReader(b"\x01"), "nn_bytes")  # 7 zeros, a 1, no suffix
