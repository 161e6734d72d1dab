"""Bit-level writer and reader, most significant bit first.

:class:`BitWriter` appends bits and unsigned integers to a growing ``bytearray`` and zero-pads
the last byte; :class:`BitReader` reads them back from ``bytes`` and raises
:class:`~coolchic.errors.BitstreamError` (never ``IndexError``) when asked for bits past the end.
Bulk operations work on numpy arrays of 0/1 bits (``uint8``) so that vectorised coders such as
:mod:`coolchic.bitstream.expgolomb` never loop over bits in Python.
"""

from __future__ import annotations

import numpy as np

from coolchic.errors import BitstreamError

__all__ = ["BitReader", "BitWriter"]


class BitWriter:
    """Accumulates bits MSB-first; :meth:`to_bytes` pads the last byte with zeros."""

    def __init__(self) -> None:
        self._bytes = bytearray()
        self._pending = 0  # the last, incomplete byte's bits, right-aligned
        self._n_pending = 0  # 0..7

    @property
    def n_bits(self) -> int:
        """Number of bits written so far."""
        return 8 * len(self._bytes) + self._n_pending

    def write_uint(self, value: int, n_bits: int) -> None:
        """Append the ``n_bits`` low bits of ``value`` (``0 <= value < 2**n_bits``), MSB first.

        Raises:
            ValueError: a negative width or a value that does not fit.
        """
        value = int(value)
        if n_bits < 0:
            raise ValueError(f"n_bits: expected >= 0, found {n_bits}")
        if not 0 <= value < (1 << n_bits):
            raise ValueError(f"value: expected an integer in [0, 2^{n_bits}), found {value}")
        acc = (self._pending << n_bits) | value
        total = self._n_pending + n_bits
        n_full, rest = divmod(total, 8)
        if n_full:
            self._bytes += (acc >> rest).to_bytes(n_full, "big")
        self._pending = acc & ((1 << rest) - 1)
        self._n_pending = rest

    def write_bit(self, bit: int) -> None:
        """Append one bit (0 or 1)."""
        self.write_uint(bit, 1)

    def write_bits(self, bits: np.ndarray) -> None:
        """Append an array of bits (any integer dtype, values 0 or 1), first element first.

        Args:
            bits: 1-D integer array of 0/1 values.

        Raises:
            ValueError: a value other than 0 or 1, or a multi-dimensional array.
        """
        bits = np.asarray(bits)
        if bits.ndim != 1:
            raise ValueError(f"bits: expected a 1-D array, found shape {bits.shape}")
        if bits.size == 0:
            return
        if bits.dtype.kind not in "biu" or bits.min() < 0 or bits.max() > 1:
            raise ValueError("bits: expected integer values 0 or 1")
        bits = bits.astype(np.uint8, copy=False)
        if self._n_pending:
            head = np.array(
                [(self._pending >> (self._n_pending - 1 - i)) & 1 for i in range(self._n_pending)],
                dtype=np.uint8,
            )
            bits = np.concatenate([head, bits])
        n_full = (bits.size // 8) * 8
        self._bytes += np.packbits(bits[:n_full]).tobytes()
        tail = bits[n_full:]
        self._pending = 0
        for bit in tail.tolist():
            self._pending = (self._pending << 1) | bit
        self._n_pending = int(tail.size)

    def align(self) -> None:
        """Zero-pad to the next byte boundary (no-op when already aligned)."""
        if self._n_pending:
            self.write_uint(0, 8 - self._n_pending)

    def to_bytes(self) -> bytes:
        """Everything written so far, the last byte zero-padded."""
        if not self._n_pending:
            return bytes(self._bytes)
        return bytes(self._bytes) + bytes([self._pending << (8 - self._n_pending)])


class BitReader:
    """Reads bits MSB-first from ``data``, starting at bit ``position``.

    Args:
        data: the bytes to read.
        position: first bit to read (0 = MSB of ``data[0]``).
    """

    def __init__(self, data: bytes | bytearray | memoryview, position: int = 0) -> None:
        self._data = bytes(data)
        self._n_bits = 8 * len(self._data)
        if not 0 <= position <= self._n_bits:
            raise ValueError(f"position: expected 0..{self._n_bits}, found {position}")
        self._position = position
        self._bit_array: np.ndarray | None = None

    @property
    def data(self) -> bytes:
        """The underlying bytes."""
        return self._data

    @property
    def position(self) -> int:
        """Index of the next bit to read."""
        return self._position

    @property
    def n_bits(self) -> int:
        """Total number of bits in ``data``."""
        return self._n_bits

    @property
    def remaining(self) -> int:
        """Bits left after :attr:`position`."""
        return self._n_bits - self._position

    def _need(self, n_bits: int, what: str) -> None:
        if n_bits > self.remaining:
            raise BitstreamError(
                f"{what}: expected {n_bits} more bits at bit {self._position}, "
                f"found only {self.remaining}"
            )

    def read_uint(self, n_bits: int, what: str = "unsigned integer") -> int:
        """Read an ``n_bits``-wide unsigned integer, MSB first.

        Raises:
            BitstreamError: fewer than ``n_bits`` bits remain (``what`` names the field).
        """
        if n_bits < 0:
            raise ValueError(f"n_bits: expected >= 0, found {n_bits}")
        if n_bits == 0:
            return 0
        self._need(n_bits, what)
        start = self._position
        first, last = start >> 3, (start + n_bits - 1) >> 3
        chunk = int.from_bytes(self._data[first : last + 1], "big")
        drop = 8 * (last + 1) - (start + n_bits)
        self._position += n_bits
        return (chunk >> drop) & ((1 << n_bits) - 1)

    def read_bit(self) -> int:
        """Read one bit."""
        return self.read_uint(1, "bit")

    def read_bits(self, n_bits: int, what: str = "bits") -> np.ndarray:
        """Read ``n_bits`` bits as a ``uint8`` array of 0/1 values.

        Raises:
            BitstreamError: fewer than ``n_bits`` bits remain.
        """
        if n_bits < 0:
            raise ValueError(f"n_bits: expected >= 0, found {n_bits}")
        self._need(n_bits, what)
        out = self.bit_array()[self._position : self._position + n_bits].copy()
        self._position += n_bits
        return out

    def skip(self, n_bits: int, what: str = "bits") -> None:
        """Advance by ``n_bits``.

        Raises:
            BitstreamError: fewer than ``n_bits`` bits remain.
        """
        if n_bits < 0:
            raise ValueError(f"n_bits: expected >= 0, found {n_bits}")
        self._need(n_bits, what)
        self._position += n_bits

    def align(self) -> int:
        """Skip to the next byte boundary; return the padding bits that were skipped."""
        pad = (-self._position) % 8
        return self.read_uint(pad, "padding")

    def bit_array(self) -> np.ndarray:
        """All bits of ``data`` as a read-only ``uint8`` array of 0/1 (computed once)."""
        if self._bit_array is None:
            bits = np.unpackbits(np.frombuffer(self._data, dtype=np.uint8))
            bits.setflags(write=False)
            self._bit_array = bits
        return self._bit_array
