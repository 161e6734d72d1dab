"""Signed Golomb-Rice codes of parameter k, vectorised with numpy (format version 7 on).

A signed integer ``q`` is mapped to ``u >= 0`` as for the exp-Golomb codes
(:func:`~coolchic.bitstream.expgolomb.to_unsigned`: 0, 1, −1, 2, −2, … → 0, 1, 2, 3, 4, …).
Its Rice code is the quotient ``u >> k`` in unary, as that many zeros and a one, followed by
the ``k`` low bits of ``u``: ``(u >> k) + 1 + k`` bits.

Why a second family: the quantised network parameters of a group spread roughly like a
Laplace, whose magnitudes are geometric, and a Rice code is the optimal prefix code of a
geometric source. Exp-Golomb codes spend a flat ``k + 1`` bits on the first ``2^k`` values and
double their buckets after that, which suits heavier tails. On the streams of 192x128 and
416x240 photos the better of the two per group took 1–4 % fewer bits than exp-Golomb alone,
about 60 bits of a 192x128 stream (BENCHMARKS.md, 2026-12-06 09:30).

A code is ``zeros + binary(v)`` with ``v = (1 << k) | (u & (2^k − 1))``, so the encoder builds
the bits as the exp-Golomb encoder does, and the decoder walks the code boundaries with the
same "next 1 bit" table.
"""

from __future__ import annotations

import numpy as np

from coolchic.bitstream.bits import BitReader
from coolchic.bitstream.constants import MAX_EG_ORDER, NN_Q_MAX
from coolchic.bitstream.expgolomb import (
    next_one_table,
    read_bits_at,
    to_unsigned,
    zero_prefixed_bits,
)
from coolchic.errors import BitstreamError

__all__ = ["best_parameter", "decode", "encode", "max_quotient", "n_bits"]

#: Largest ``u`` of a parameter the format carries (``|q| <= 2^15``).
_MAX_UNSIGNED = 2 * NN_Q_MAX


def _check_parameter(k: int) -> None:
    if not (isinstance(k, int | np.integer) and 0 <= k <= MAX_EG_ORDER):
        raise ValueError(f"Rice parameter: expected an integer in 0..{MAX_EG_ORDER}, found {k!r}")


def _unsigned(values: np.ndarray) -> np.ndarray:
    u = to_unsigned(values)
    if u.size and int(u.max()) > _MAX_UNSIGNED:
        raise ValueError(f"values: expected |q| <= {NN_Q_MAX} for a Rice code")
    return u


def max_quotient(k: int) -> int:
    """The longest run of zeros a code of parameter ``k`` can start with (``|q| <= 2^15``)."""
    return _MAX_UNSIGNED >> k


def n_bits(values: np.ndarray, k: int) -> int:
    """Exact length in bits of the parameter-``k`` codes of ``values`` (what :func:`encode`
    writes); |q| <= 2^15."""
    _check_parameter(k)
    u = _unsigned(values)
    return int(((u >> k) + 1 + k).sum())


def best_parameter(values: np.ndarray) -> tuple[int, int]:
    """The parameter k in 0..12 giving the shortest code, and that length (ties: smaller k).

    Args:
        values: integer array, any shape, |q| <= 2^15 (empty: ``(0, 0)``).
    """
    u = _unsigned(values)
    lengths = [int(((u >> k) + 1 + k).sum()) for k in range(MAX_EG_ORDER + 1)]
    best = int(np.argmin(lengths))  # the first of equal minima
    return (best, lengths[best]) if u.size else (0, 0)


def encode(values: np.ndarray, k: int) -> np.ndarray:
    """Parameter-``k`` signed Rice codes of ``values`` (flattened C order), concatenated.

    Returns:
        ``uint8`` array of 0/1 bits, first code first; its length is ``n_bits(values, k)``.

    Raises:
        TypeError: a non-integer array.
        ValueError: a bad parameter or a value beyond 2^15.
    """
    _check_parameter(k)
    u = _unsigned(values)
    return zero_prefixed_bits((1 << k) | (u & ((1 << k) - 1)), (u >> k) + 1 + k)


def decode(reader: BitReader, count: int, k: int) -> np.ndarray:
    """Read ``count`` parameter-``k`` signed Rice codes from ``reader`` and advance it.

    Returns:
        int64 array ``[count]``.

    Raises:
        BitstreamError: the data ends inside a code, or a code starts with more zeros than a
            value of the format (``|q| <= 2^15``) can produce.
    """
    _check_parameter(k)
    if count < 0:
        raise ValueError(f"count: expected >= 0, found {count}")
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    start = reader.position
    longest = max_quotient(k)
    region = min(reader.remaining, count * (longest + 1 + k))
    table = next_one_table(reader.bit_array()[start : start + region]).tolist()
    ones: list[int] = []
    p = 0
    for _ in range(count):
        o = table[p]
        if o - p > longest:
            raise BitstreamError(
                f"Rice data: code {len(ones)} starts with {o - p} zeros, expected at most "
                f"{longest} for parameter {k} (corrupt)"
            )
        end = o + 1 + k
        if end > region:
            raise BitstreamError(
                f"Rice data: expected {count} codes of parameter {k}, the bits ran out after "
                f"{len(ones)} (truncated or corrupt)"
            )
        ones.append(o)
        p = end
    first_one = np.asarray(ones, dtype=np.int64)
    code_starts = np.concatenate(([0], first_one[:-1] + 1 + k))
    quotient = first_one - code_starts
    u = quotient << k
    if k:
        u |= read_bits_at(reader.data, first_one + start + 1, np.full(count, k))
    reader.skip(int(first_one[-1]) + 1 + k, "Rice data")
    return np.where(u & 1, (u + 1) >> 1, -(u >> 1))
