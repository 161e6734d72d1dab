"""Golomb-Rice codes of the network parameters (format version 7): lengths, round trips,
corrupt input, and the choice between Rice and exp-Golomb per group."""

from __future__ import annotations

import numpy as np
import pytest

from coolchic.bitstream import expgolomb, rice
from coolchic.bitstream.bits import BitReader, BitWriter
from coolchic.bitstream.constants import NN_Q_MAX
from coolchic.bitstream.nn_params import GroupCode, best_code
from coolchic.errors import BitstreamError


def _written(values: np.ndarray, k: int, tail: tuple[int, ...] = ()) -> bytes:
    writer = BitWriter()
    writer.write_bits(rice.encode(values, k))
    writer.write_bits(np.array(tail, dtype=np.uint8))
    return writer.to_bytes()


def test_known_codes() -> None:
    # u = 0, 1, 2, 3 for q = 0, 1, -1, 2; parameter 1: quotient u >> 1 in unary, then u & 1
    np.testing.assert_array_equal(
        rice.encode(np.array([0, 1, -1, 2]), 1), [1, 0, 1, 1, 0, 1, 0, 0, 1, 1]
    )
    assert rice.n_bits(np.array([0, 1, -1, 2]), 1) == 10
    assert rice.n_bits(np.array([5]), 0) == 10  # u = 9: nine zeros and a one


@pytest.mark.parametrize("k", range(13))
def test_round_trip_every_parameter(k: int) -> None:
    rng = np.random.default_rng(k)
    values = np.clip(np.round(rng.laplace(0, 1.5 * 2**k, 400)), -NN_Q_MAX, NN_Q_MAX).astype(int)
    values[:2] = (NN_Q_MAX, -NN_Q_MAX)  # the extremes of the format
    reader = BitReader(_written(values, k, tail=(1, 0, 1)))
    decoded = rice.decode(reader, values.size, k)
    np.testing.assert_array_equal(decoded, values)
    assert reader.position == rice.n_bits(values, k)  # the reader stops after the last code


def test_refuses_values_and_parameters_outside_the_format() -> None:
    with pytest.raises(ValueError, match="32768"):
        rice.encode(np.array([NN_Q_MAX + 1]), 3)
    with pytest.raises(ValueError, match="parameter"):
        rice.n_bits(np.array([1]), 13)
    with pytest.raises(TypeError):
        rice.encode(np.array([0.5]), 0)


def test_corrupt_and_truncated_data_raise() -> None:
    values = np.array([3, -7, 0, 12, -1])
    data = _written(values, 2)
    for end in range(len(data)):
        with pytest.raises(BitstreamError):
            rice.decode(BitReader(data[:end]), values.size, 2)
    # a run of zeros longer than any value of the format can start with
    zeros = bytes((rice.max_quotient(4) + 16) // 8 + 1)
    with pytest.raises(BitstreamError, match="zeros"):
        rice.decode(BitReader(zeros + b"\xff"), 1, 4)


def test_best_code_takes_the_shorter_family() -> None:
    rng = np.random.default_rng(0)
    geometric = np.round(rng.laplace(0, 6, 300)).astype(int)  # Rice's home ground
    code, bits = best_code(geometric)
    assert code.rice and bits == rice.best_parameter(geometric)[1]
    assert bits < expgolomb.best_order(geometric)[1]
    heavy = np.concatenate([np.zeros(50, int), [20000, -15000]])  # rare huge values
    code, bits = best_code(heavy)
    assert not code.rice and bits == expgolomb.best_order(heavy)[1]
    assert best_code(geometric, allow_rice=False)[0] == GroupCode(
        expgolomb.best_order(geometric)[0]
    )
    assert best_code(np.zeros(0, int)) == (GroupCode(), 0)  # a tie: exp-Golomb


@pytest.mark.parametrize("code", [GroupCode(3), GroupCode(3, rice=True)])
def test_group_code_dispatches(code: GroupCode) -> None:
    values = np.array([0, 4, -9, 31, 2])
    bits = code.encode(values)
    assert bits.size == code.n_bits(values)
    writer = BitWriter()
    writer.write_bits(bits)
    np.testing.assert_array_equal(code.decode(BitReader(writer.to_bytes()), 5), values)
