"""Signed exp-Golomb codes of order k, vectorised with numpy (as Cool-chic v3.2 → v5 use).

A signed integer ``q`` is first mapped to an unsigned one, ``u = −2q`` if ``q <= 0`` else
``2q − 1`` (0, 1, −1, 2, −2, … → 0, 1, 2, 3, 4, …). The order-k exp-Golomb code of ``u`` is the
binary writing of ``v = u + 2^k`` (``L = ⌊log2 v⌋ + 1`` bits) preceded by ``L − 1 − k`` zeros,
so it is ``2·⌊log2(u + 2^k)⌋ + 1 − k`` bits long. Small k suits peaky groups (most ``q`` near 0),
large k spread-out ones; :func:`best_order` picks the k that minimises the exact length.

Encoding and decoding never loop over bits in Python: codes are expanded into a bit array with
``np.repeat`` and packed; the decoder walks the code boundaries with one cheap scalar step per
value (a precomputed "next 1 bit" table) and extracts the values vectorised. The number of
leading zeros is bounded, so corrupt input raises :class:`~coolchic.errors.BitstreamError`
instead of running off the end.

:func:`write_ue` and :func:`read_ue` are the scalar, unsigned order-0 codes (``ue(v)``) of the
stream header, where a few dozen small fields do not call for numpy.
"""

from __future__ import annotations

import numpy as np

from coolchic.bitstream.bits import BitReader, BitWriter
from coolchic.bitstream.constants import EG_MAX_ABS, MAX_EG_ORDER, MAX_UE_ZEROS
from coolchic.errors import BitstreamError

__all__ = [
    "MAX_UE_VALUE",
    "best_order",
    "decode",
    "encode",
    "n_bits",
    "next_one_table",
    "read_bits_at",
    "read_ue",
    "to_unsigned",
    "ue_bits",
    "write_ue",
    "zero_prefixed_bits",
]

#: Longest value part of a code (``L``): |q| <= 2^30 gives u <= 2^31, v <= 2^31 + 2^12 < 2^32.
_MAX_VALUE_BITS = (2 * EG_MAX_ABS).bit_length()


def _check_order(k: int) -> None:
    if not (isinstance(k, int | np.integer) and 0 <= k <= MAX_EG_ORDER):
        raise ValueError(f"exp-Golomb order: expected an integer in 0..{MAX_EG_ORDER}, found {k!r}")


def _as_int64(values: np.ndarray) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind not in "iu":
        raise TypeError(f"values: expected an integer array, found dtype {array.dtype}")
    array = array.astype(np.int64, copy=False).ravel()
    if array.size and int(np.abs(array).max()) > EG_MAX_ABS:
        raise ValueError(
            f"values: expected |q| <= 2^30, found {int(np.abs(array).max())} "
            "(exp-Golomb codes of larger values are not supported)"
        )
    return array


def to_unsigned(values: np.ndarray) -> np.ndarray:
    """Map signed integers to unsigned ones: ``u = −2q`` if ``q <= 0`` else ``2q − 1``.

    Args:
        values: integer array, any shape, |q| <= 2^30.

    Returns:
        int64 array of the same size (flattened), values >= 0.
    """
    q = _as_int64(values)
    return np.where(q <= 0, -2 * q, 2 * q - 1)


def _bit_length(v: np.ndarray) -> np.ndarray:
    """Exact ``⌊log2 v⌋ + 1`` of int64 values ``1 <= v < 2^53`` (float64 is exact there)."""
    _, exponent = np.frexp(v.astype(np.float64))
    return exponent.astype(np.int64)


def _code_lengths(u: np.ndarray, k: int) -> np.ndarray:
    return 2 * _bit_length(u + (1 << k)) - 1 - k


def n_bits(values: np.ndarray, k: int) -> int:
    """Exact length in bits of the order-k codes of ``values`` (what :func:`encode` writes).

    Args:
        values: integer array, any shape, |q| <= 2^30.
        k: order, 0..12.
    """
    _check_order(k)
    u = to_unsigned(values)
    return int(_code_lengths(u, k).sum())


def best_order(values: np.ndarray) -> tuple[int, int]:
    """The order k in 0..12 giving the shortest code, and that length in bits (ties: smaller k).

    Args:
        values: integer array, any shape, |q| <= 2^30 (empty: ``(0, 0)``).
    """
    u = to_unsigned(values)
    best_k, best_bits = 0, -1
    for k in range(MAX_EG_ORDER + 1):
        bits = int(_code_lengths(u, k).sum())
        if best_bits < 0 or bits < best_bits:
            best_k, best_bits = k, bits
    return best_k, best_bits


def encode(values: np.ndarray, k: int) -> np.ndarray:
    """Order-k signed exp-Golomb codes of ``values``, concatenated.

    Args:
        values: integer array, any shape (coded in flattened C order), |q| <= 2^30.
        k: order, 0..12.

    Returns:
        ``uint8`` array of 0/1 bits, MSB of the first code first; its length is
        ``n_bits(values, k)``. Append it with :meth:`BitWriter.write_bits`.

    Raises:
        TypeError: a non-integer array.
        ValueError: a bad order or a value beyond 2^30.
    """
    _check_order(k)
    v = to_unsigned(values) + (1 << k)
    return zero_prefixed_bits(v, 2 * _bit_length(v) - 1 - k)


def zero_prefixed_bits(v: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The codes ``zeros + binary(v_i)``, each ``lengths[i]`` bits long (at least the bit
    length of ``v_i``), concatenated as a 0/1 ``uint8`` array: the form of exp-Golomb and
    Rice codes alike."""
    if v.size == 0:
        return np.zeros(0, dtype=np.uint8)
    ends = np.cumsum(lengths)
    total = int(ends[-1])
    # Bit g of the output belongs to code i with ends[i-1] <= g < ends[i]; it is bit
    # (ends[i] - 1 - g) of v_i, counting from the least significant one. The code's leading
    # zeros are the zero high bits of v_i (shifts past 63 are clipped: they read 0 too).
    shift = np.repeat(ends - 1, lengths) - np.arange(total, dtype=np.int64)
    np.minimum(shift, 63, out=shift)
    return ((np.repeat(v, lengths) >> shift) & 1).astype(np.uint8)


def decode(reader: BitReader, count: int, k: int) -> np.ndarray:
    """Read ``count`` order-k signed exp-Golomb codes from ``reader`` and advance it.

    Args:
        reader: positioned at the first bit of the first code.
        count: number of values, >= 0.
        k: order, 0..12.

    Returns:
        int64 array ``[count]``.

    Raises:
        BitstreamError: the data ends inside a code, or a code has more leading zeros than any
            value the encoder accepts (``2^30``) can produce.
    """
    _check_order(k)
    if count < 0:
        raise ValueError(f"count: expected >= 0, found {count}")
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    start = reader.position
    max_zeros = _MAX_VALUE_BITS - 1 - k
    # No code is longer than 2 * max_zeros + k + 1 bits: look no further than count of those.
    region = min(reader.remaining, count * (2 * max_zeros + k + 1))
    next_one = next_one_table(reader.bit_array()[start : start + region])
    code_ends = _code_ends(next_one, count, k, max_zeros)
    code_starts = np.concatenate(([0], code_ends[:-1]))
    first_one = next_one[code_starts]
    zeros = first_one - code_starts
    if int(zeros.max()) > max_zeros:
        bad = int(np.argmax(zeros > max_zeros))
        raise BitstreamError(
            f"exp-Golomb data: code {bad} has {int(zeros[bad])} leading zeros, expected at most "
            f"{max_zeros} for order {k} (corrupt)"
        )
    # The value part of a code is its first 1 bit and the zeros + k bits after it (<= 32 bits).
    v = read_bits_at(reader.data, first_one + start, zeros + (k + 1))
    u = v - (1 << k)
    reader.skip(int(code_ends[-1]), "exp-Golomb data")
    return np.where(u & 1, (u + 1) >> 1, -(u >> 1))


def next_one_table(bits: np.ndarray) -> np.ndarray:
    """``next_one[p]``: the first position >= p holding a 1 (``len(bits)`` if none), for p in
    ``0..len(bits)``; one vectorised pass instead of a bit-by-bit scan per code."""
    region = bits.size
    next_one = np.full(region + 1, region, dtype=np.int64)
    ones = np.flatnonzero(bits)
    next_one[ones] = ones
    return np.minimum.accumulate(next_one[::-1])[::-1]


def _code_ends(next_one: np.ndarray, count: int, k: int, max_zeros: int) -> np.ndarray:
    """Where each of the ``count`` codes ends, relative to the first one's start.

    A code starting at p has its first 1 at o = next_one[p], z = o − p leading zeros and ends
    at o + z + k + 1 = 2o − p + k + 1: one cheap scalar step a code, on a Python list.

    Raises:
        BitstreamError: the bits run out before ``count`` codes (a run of zeros longer than
            ``max_zeros`` is reported as such).
    """
    region = next_one.size - 1
    table = next_one.tolist()
    ends: list[int] = []
    append = ends.append
    p = o = 0
    step = k + 1
    for _ in range(count):
        o = table[p]
        end = 2 * o - p + step
        if end > region:
            break
        append(end)
        p = end
    if len(ends) < count:
        if o - p > max_zeros:
            raise BitstreamError(
                f"exp-Golomb data: code {len(ends)} has at least {o - p} leading zeros, expected "
                f"at most {max_zeros} for order {k} (corrupt)"
            )
        raise BitstreamError(
            f"exp-Golomb data: expected {count} codes of order {k}, the bits ran out after "
            f"{len(ends)} (truncated or corrupt)"
        )
    return np.asarray(ends, dtype=np.int64)


def read_bits_at(data: bytes, positions: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """The ``widths[i]``-bit unsigned integers (<= 56 bits) starting at bit ``positions[i]`` of
    ``data``, MSB first: an 8-byte window at each position's byte, shifted into place."""
    raw = np.frombuffer(data, dtype=np.uint8)
    padded = np.zeros(raw.size + 8, dtype=np.uint64)
    padded[: raw.size] = raw
    byte_index = positions >> 3
    window = np.zeros(positions.size, dtype=np.uint64)
    for j in range(8):
        window = (window << np.uint64(8)) | padded[byte_index + j]
    window = window << (positions & 7).astype(np.uint64)
    return (window >> (64 - widths).astype(np.uint64)).astype(np.int64)


# --------------------------------------------------------------------------------------------
# Scalar unsigned codes ue(v) of the header

#: Largest value a ``ue`` code with at most :data:`MAX_UE_ZEROS` leading zeros can carry.
MAX_UE_VALUE = (1 << (MAX_UE_ZEROS + 1)) - 2


def ue_bits(value: int) -> int:
    """Length in bits of ``ue(value)``: ``2·⌊log2(value + 1)⌋ + 1``."""
    return 2 * (value + 1).bit_length() - 1


def write_ue(writer: BitWriter, value: int) -> None:
    """Append ``ue(value)``: ``L − 1`` zeros, then the ``L`` bits of ``value + 1``.

    Raises:
        ValueError: a negative value, or one above :data:`MAX_UE_VALUE` (no reader would take
            its prefix).
    """
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_UE_VALUE:
        raise ValueError(f"ue value: expected an integer in 0..{MAX_UE_VALUE}, found {value!r}")
    writer.write_uint(value + 1, ue_bits(value))  # the leading zeros are the high bits


def read_ue(reader: BitReader, what: str = "ue code") -> int:
    """Read one ``ue(v)`` code and advance ``reader``.

    The zero prefix is read one bit at a time but never beyond :data:`MAX_UE_ZEROS`, so a run
    of zero bytes is refused at once instead of being walked to the end of the data.

    Raises:
        BitstreamError: the data ends inside the code, or its prefix is too long (``what``
            names the field).
    """
    zeros = 0
    while not reader.read_uint(1, what):
        zeros += 1
        if zeros > MAX_UE_ZEROS:
            raise BitstreamError(
                f"{what}: exp-Golomb code with more than {MAX_UE_ZEROS} leading zeros at bit "
                f"{reader.position - zeros} (corrupt)"
            )
    return ((1 << zeros) | reader.read_uint(zeros, what)) - 1
