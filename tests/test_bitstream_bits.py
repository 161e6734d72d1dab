"""BitWriter / BitReader: round trips, padding, and errors instead of IndexError."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coolchic.bitstream.bits import BitReader, BitWriter
from coolchic.errors import BitstreamError

_fields = st.lists(
    st.integers(min_value=0, max_value=64).flatmap(
        lambda width: st.tuples(st.integers(0, (1 << width) - 1), st.just(width))
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(_fields)
def test_uint_fields_round_trip(fields: list[tuple[int, int]]) -> None:
    writer = BitWriter()
    for value, width in fields:
        writer.write_uint(value, width)
    total = sum(width for _, width in fields)
    assert writer.n_bits == total
    data = writer.to_bytes()
    assert len(data) == (total + 7) // 8
    reader = BitReader(data)
    assert [reader.read_uint(width) for _, width in fields] == [value for value, _ in fields]
    assert reader.remaining == 8 * len(data) - total
    assert reader.align() == 0  # padding is zeros


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 7), st.lists(st.integers(0, 1), max_size=100))
def test_bit_arrays_after_unaligned_fields(lead: int, bits: list[int]) -> None:
    writer = BitWriter()
    writer.write_uint((1 << lead) - 1, lead)
    writer.write_bits(np.array(bits, dtype=np.uint8))
    writer.write_bit(1)
    reader = BitReader(writer.to_bytes())
    assert reader.read_uint(lead) == (1 << lead) - 1
    assert reader.read_bits(len(bits)).tolist() == bits
    assert reader.read_bit() == 1


def test_msb_first_and_zero_padding() -> None:
    writer = BitWriter()
    writer.write_uint(0b101, 3)
    assert writer.to_bytes() == bytes([0b1010_0000])
    writer.align()
    writer.write_uint(0xABC, 12)
    assert writer.to_bytes() == bytes([0b1010_0000, 0xAB, 0xC0])


def test_reading_past_the_end_raises_bitstream_error() -> None:
    reader = BitReader(b"\xff")
    assert reader.read_uint(5) == 31
    with pytest.raises(BitstreamError, match="expected 4 more bits"):
        reader.read_uint(4)
    with pytest.raises(BitstreamError):
        reader.read_bits(9)
    with pytest.raises(BitstreamError):
        reader.skip(4)
    assert BitReader(b"").read_uint(0) == 0
    with pytest.raises(BitstreamError):
        BitReader(b"").read_bit()


@pytest.mark.parametrize(("value", "width"), [(2, 1), (-1, 3), (256, 8), (1, 0)])
def test_writer_rejects_values_that_do_not_fit(value: int, width: int) -> None:
    with pytest.raises(ValueError, match="value"):
        BitWriter().write_uint(value, width)


def test_writer_rejects_non_bits() -> None:
    with pytest.raises(ValueError, match="0 or 1"):
        BitWriter().write_bits(np.array([0, 2]))
