"""One exception tree, split by who is at fault; the CLI maps each branch to an exit code."""

from __future__ import annotations


class CoolchicError(Exception):
    """Base of every error coolchic raises on purpose (a user-facing, one-line message)."""


class InputError(CoolchicError, ValueError):
    """The input file is unusable: bad name, wrong size, out-of-range samples, unreadable."""


class BitstreamError(CoolchicError, ValueError):
    """A .cool file is truncated, corrupted or not a coolchic bitstream."""


class UnsupportedVersion(BitstreamError):
    """The bitstream was written by a format version this decoder does not know."""


class ChecksumMismatch(BitstreamError):
    """The payload does not match the checksum stored in the header."""


class LimitExceeded(BitstreamError):
    """A size or count in the header exceeds what the decoder accepts or what the file holds."""


class EncodingError(CoolchicError):
    """Encoding failed after every recovery attempt (restore, lower learning rate, new seed)."""


class DeviceError(CoolchicError):
    """The requested compute device is not available in this torch build or on this machine."""


class ExecutorError(CoolchicError):
    """Jobs cannot be run where asked: a missing optional extra, an unreachable scheduler."""
