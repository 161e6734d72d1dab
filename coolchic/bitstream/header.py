"""The self-describing stream header and the container around the two payload sections.

A coolchic file is ``header | nn section | latent section``. The header (format version 9, the
full table is in ``docs/bitstream.md``) is the 2-byte magic and the version byte, then one bit
string, most significant bit first: image size, frame format and bit depth, the whole decoder
architecture (one preset code for the encoder's defaults), the step exponent and code
(exp-Golomb or Rice, and its order) of each network parameter group, one "all zero" flag per
latent grid, the length of the parameter section (the latent section is the rest of the file;
versions 2 to 6 wrote its length too) and the optional frame rate, mostly as unsigned
exp-Golomb codes ``ue(v)`` (a default header is 23 to 25 bytes, against 69 in version 1 and 30
in version 5, on files of 500 to 2,000 bytes). Zero bits pad it to a byte, and one CRC-32 of
everything before it *and* of both sections ends it.

The fields, their codes, ranges and rules are one table,
:data:`~coolchic.bitstream.header_fields.HEADER_FIELDS`: :func:`write_header` writes it,
:func:`read_header` reads it and :class:`StreamHeader` is validated against it. This module
holds the header object, its size bounds, the one constructor from a model architecture
(:func:`header_for_model`) and the container.

Torch-free: plain frozen dataclasses and bytes. :func:`read_header` trusts nothing: it checks
magic and version, reads the fields with every loop count and code length bounded, checks that
the declared sections are present and that the CRC matches, and only then validates every field
against the decoder limits of :mod:`coolchic.bitstream.constants`, before the caller allocates
anything.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final

from coolchic.bitstream.bitfields import (
    FieldError,
    bit_bounds,
    build,
    check_fields,
    field_error,
    read_fields,
    write_fields,
)
from coolchic.bitstream.bits import BitReader, BitWriter
from coolchic.bitstream.constants import (
    FORMAT_VERSION,
    MAGIC,
    MAGIC_V1,
    MAX_BITS_PER_LATENT,
    MAX_EG_BITS_PER_PARAM,
    MAX_SECTION_BYTES,
    NN_GROUPS,
    RANGE_CODER_SLACK_WORDS,
    READABLE_VERSIONS,
)
from coolchic.bitstream.header_fields import (
    ADDED_FIELDS,
    FRAME_FORMAT_CODES,
    LAYER_KIND_CODES,
    NONLINEARITY_CODES,
    FrameFormat,
    GroupCoding,
    LayerKind,
    Nonlinearity,
    SynthesisLayerField,
    header_fields,
)
from coolchic.bitstream.nn_params import GroupCode
from coolchic.errors import BitstreamError, ChecksumMismatch, LimitExceeded, UnsupportedVersion
from coolchic.model.layout import coded_grid_shapes, grid_shapes, ifce_inputs

if TYPE_CHECKING:
    from coolchic.model.config import ModelConfig

__all__ = [
    "FRAME_FORMAT_CODES",
    "LAYER_KIND_CODES",
    "MAX_HEADER_BYTES",
    "MIN_HEADER_BYTES",
    "NONLINEARITY_CODES",
    "FrameFormat",
    "GroupCoding",
    "LayerKind",
    "Nonlinearity",
    "StreamHeader",
    "SynthesisLayerField",
    "header_for_model",
    "max_latent_bytes",
    "pack_stream",
    "read_header",
    "unpack_stream",
    "write_header",
]

#: Magic and version byte, before the bit string.
_PREFIX_BYTES: Final = len(MAGIC) + 1
_CRC_BYTES: Final = 4


def _header_bytes(field_bits: int) -> int:
    """Header length for a bit string of ``field_bits``: prefix, padded bits, CRC."""
    return _PREFIX_BYTES + -(-field_bits // 8) + _CRC_BYTES


# over every version read: version 6 holds both the shortest (a preset architecture) and the
# longest (a preset code, then every field at its limit)
_BOUNDS = [bit_bounds(header_fields(version)) for version in READABLE_VERSIONS]
_MIN_BITS, _MAX_BITS = min(low for low, _ in _BOUNDS), max(high for _, high in _BOUNDS)
#: Smallest header, every field at its smallest (1x1 RGB, a preset architecture, no section,
#: no frame rate: 16 bytes).
MIN_HEADER_BYTES: Final = _header_bytes(_MIN_BITS)
#: A bound on the largest header (every field at its limit; not every combination is valid).
MAX_HEADER_BYTES: Final = _header_bytes(_MAX_BITS)


def max_latent_bytes(n_symbols: int) -> int:
    """Largest latent section that ``n_symbols`` coded latents can produce (bytes).

    Every symbol costs at most 24 bits (constriction's leaky quantiser keeps a probability of
    at least 2^-24 for each value of the alphabet), plus the coder's final state; no symbol,
    no bytes.
    """
    if n_symbols <= 0:
        return 0
    return 4 * (-(-n_symbols * MAX_BITS_PER_LATENT // 32) + RANGE_CODER_SLACK_WORDS)


def _default_coding() -> tuple[GroupCoding, ...]:
    return tuple(GroupCoding() for _ in NN_GROUPS)


@dataclass(frozen=True)
class StreamHeader:
    """Everything a decoder needs besides the two payload sections.

    Attributes:
        width: image width W (luma / RGB), 1..16384 (even for yuv420).
        height: image height H, 1..16384 (even for yuv420).
        frame_format: ``"rgb"`` (0), ``"yuv420"`` (1) or ``"yuv444"`` (2).
        bit_depth: 8..16.
        n_grids: number of latent grids, 1..10.
        n_ctx_rowcol: N, the ARM context holds ``2N² + 2N`` neighbours; 1..4.
        coarser_contexts: P, then the co-located values of the P next coarser grids; 0..3
            (always 0 in version 2, which has no such field).
        arm_stabiliser: the ARM adds a linear map of its context to its output (always off
            before version 4, which added the flag).
        synthesis_stabiliser: the synthesis adds a 1x1 linear map of its input to its output
            (always off before version 4, which added the flag).
        ifce_features: C_f, the inter-feature context's values at the end of the ARM context
            of the three finest grids; 0..8, 0 with ``coarser_contexts`` (version 5 on).
        hyper_grids: H, hyper-latent grids at the H coarsest latent resolutions, coded after
            the latent grids and read only by the inter-feature context; 0..min(4, n_grids −
            1), 0 without ``ifce_features`` (version 5 on).
        arm_hidden: widths of the ARM hidden layers, at most 8, each 1..64.
        upsampling_kernel: even, 4..16.
        preconcat_kernel: 0 (none) or odd 1..15.
        synthesis: 1..16 layers; residual layers keep the channel count; the last layer
            outputs 3 channels.
        nn_coding: one :class:`GroupCoding` per ``NN_GROUPS`` entry (arm w, arm b,
            upsampling w, upsampling b, synthesis w, synthesis b); ARM weights need
            ``exp <= 16``.
        zero_grids: per grid (``n_grids`` booleans), True when the grid is all zero and not
            coded; ``()`` when no grid is, which is also how an all-False tuple is stored (so
            headers compare equal whatever the spelling). Read :attr:`zero_grid_flags`.
        zero_hyper_grids: the same for the ``hyper_grids`` hyper-latent grids (version 5 on).
        nn_bytes: length of the network-parameter section.
        latent_bytes: length of the latent section (a multiple of 4); from version 7 on not
            written, the section being the rest of the file.
        fps_text: source frame rate as written in YUV file names (``"50"``, ``"29.97"``), at
            most 16 characters; ``""`` when unknown. The source name is not stored: a decoder
            names its output after the ``.cool`` file.
        format_version: one of :data:`~coolchic.bitstream.constants.READABLE_VERSIONS`; the
            encoder writes :data:`~coolchic.bitstream.constants.FORMAT_VERSION`.

    Every field is checked when the header is built, against the ranges and rules of
    :data:`~coolchic.bitstream.header_fields.HEADER_FIELDS`.

    The CRC-32 is not a field: it depends on the payload, so :func:`write_header` computes it
    and :func:`read_header` checks it.
    """

    width: int
    height: int
    frame_format: FrameFormat
    bit_depth: int
    n_grids: int
    n_ctx_rowcol: int
    arm_hidden: tuple[int, ...]
    upsampling_kernel: int
    preconcat_kernel: int
    synthesis: tuple[SynthesisLayerField, ...]
    nn_coding: tuple[GroupCoding, ...] = field(default_factory=_default_coding)
    zero_grids: tuple[bool, ...] = ()
    nn_bytes: int = 0
    latent_bytes: int = 0
    fps_text: str = ""
    coarser_contexts: int = 0
    arm_stabiliser: bool = False
    synthesis_stabiliser: bool = False
    ifce_features: int = 0
    hyper_grids: int = 0
    zero_hyper_grids: tuple[bool, ...] = ()
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.format_version not in READABLE_VERSIONS:
            raise field_error(
                "format_version", f"one of {READABLE_VERSIONS}", self.format_version, is_limit=False
            )
        for version, added in ADDED_FIELDS.items():
            for name, before in added.items():
                if self.format_version < version and getattr(self, name) != before:
                    raise field_error(
                        name,
                        f"{before} before format version {version}",
                        getattr(self, name),
                        is_limit=False,
                    )
        check_fields(self, header_fields(self.format_version))
        if self.format_version < 7 and any(coding.rice for coding in self.nn_coding):
            raise field_error(
                "nn_coding.rice", "False before format version 7", True, is_limit=False
            )
        if self.format_version >= 7:
            # no longer a field of the table: the same rules, checked here
            if self.latent_bytes % 4:
                raise field_error(
                    "latent_bytes", "a multiple of 4", self.latent_bytes, is_limit=False
                )
            if not 0 <= self.latent_bytes <= min(self.max_latent_bytes, MAX_SECTION_BYTES):
                raise field_error(
                    "latent_bytes",
                    f"0..{min(self.max_latent_bytes, MAX_SECTION_BYTES)}",
                    self.latent_bytes,
                    is_limit=True,
                )

    # ----------------------------------------------------------------------------------------

    @property
    def grid_shapes(self) -> tuple[tuple[int, int], ...]:
        """``(h, w)`` of each latent grid, grid 0 (full resolution) first."""
        return tuple(grid_shapes(self.height, self.width, self.n_grids))

    @property
    def coded_grid_shapes(self) -> tuple[tuple[int, int], ...]:
        """``(h, w)`` of every grid of the latent section: the latent grids, then the
        hyper-latent grids."""
        return tuple(coded_grid_shapes(self.height, self.width, self.n_grids, self.hyper_grids))

    @property
    def zero_grid_flags(self) -> tuple[bool, ...]:
        """``n_grids`` booleans: True for a grid that is all zero and not coded."""
        return self.zero_grids or (False,) * self.n_grids

    @property
    def zero_hyper_grid_flags(self) -> tuple[bool, ...]:
        """``hyper_grids`` booleans, as :attr:`zero_grid_flags`."""
        return self.zero_hyper_grids or (False,) * self.hyper_grids

    @property
    def coded_zero_flags(self) -> tuple[bool, ...]:
        """One flag per grid of :attr:`coded_grid_shapes`."""
        return self.zero_grid_flags + self.zero_hyper_grid_flags

    @property
    def n_contexts(self) -> int:
        """Width of the ARM input, ``2N² + 2N + P + C_f``."""
        return (
            2 * self.n_ctx_rowcol * (self.n_ctx_rowcol + 1)
            + self.coarser_contexts
            + self.ifce_features
        )

    @property
    def n_coded_latents(self) -> int:
        """Number of latents in the latent section (the grids not flagged all-zero)."""
        return sum(
            h * w
            for (h, w), zero in zip(self.coded_grid_shapes, self.coded_zero_flags, strict=True)
            if not zero
        )

    @property
    def max_latent_bytes(self) -> int:
        """Largest latent section the coded grids can produce (see :func:`max_latent_bytes`)."""
        return max_latent_bytes(self.n_coded_latents)

    @property
    def max_n_parameters(self) -> int:
        """A generous bound on the number of network parameters of this architecture.

        ARM and synthesis are counted exactly (weights and biases of every layer, the
        stabilisers' weights). The
        upsampling is bounded by one full 2-D transposed-conv and one full 2-D pre-concat kernel
        and two biases per level, whatever the model's actual parametrisation.
        """
        arm = 0
        width = self.n_contexts
        for out in (*self.arm_hidden, 2):
            arm += width * out + out
            width = out
        if self.arm_stabiliser:
            arm += 2 * self.n_contexts
        for n_in in ifce_inputs(self.n_grids, self.hyper_grids) if self.ifce_features else ():
            arm += (n_in + 1) * self.ifce_features
        synthesis = 0
        channels = self.n_grids
        for layer in self.synthesis:
            synthesis += channels * layer.out_channels * layer.kernel**2 + layer.out_channels
            channels = layer.out_channels
        if self.synthesis_stabiliser:
            synthesis += self.n_grids * channels
        levels = max(self.n_grids - 1, 1)
        upsampling = levels * (self.upsampling_kernel**2 + self.preconcat_kernel**2 + 2)
        return arm + synthesis + upsampling

    @property
    def max_nn_bytes(self) -> int:
        """Largest parameter section: every parameter at the longest exp-Golomb code."""
        return min(-(-self.max_n_parameters * MAX_EG_BITS_PER_PARAM // 8), MAX_SECTION_BYTES)

    def group_coding(self, module: str, kind: str) -> GroupCoding:
        """The :class:`GroupCoding` of ``(module, kind)``, e.g. ``("arm", "weight")``."""
        try:
            return self.nn_coding[NN_GROUPS.index((module, kind))]
        except ValueError:
            raise ValueError(
                f"parameter group: expected one of {NN_GROUPS}, found {(module, kind)!r}"
            ) from None


#: The header fields a model architecture gives as they are (the lists are converted).
_ARCHITECTURE_NUMBERS: Final = (
    "n_grids",
    "n_ctx_rowcol",
    "coarser_contexts",
    "ifce_features",
    "hyper_grids",
    "arm_stabiliser",
    "synthesis_stabiliser",
    "upsampling_kernel",
    "preconcat_kernel",
)


def header_for_model(
    config: ModelConfig,
    width: int,
    height: int,
    frame_format: FrameFormat,
    bit_depth: int,
    *,
    exps: Mapping[tuple[str, str], int],
    codes: Mapping[tuple[str, str], GroupCode],
    zero_grids: tuple[bool, ...] = (),
    fps_text: str = "",
) -> StreamHeader:
    """The header of a stream coded with the architecture ``config`` (a
    :class:`~coolchic.model.config.ModelConfig`, read by attribute: no model import here).

    The one place where an architecture and the facts of a frame become header fields, for the
    encoder and for tests and benchmarks that build streams without training.

    Args:
        exps: step exponent of every ``(module, kind)`` group of ``NN_GROUPS``.
        codes: the code of each group; a group without parameters may be absent (exp-Golomb
            of order 0).
        zero_grids: per coded grid (latent grids, then hyper-latent grids), True when it is
            all zero and not coded (``()``: none is).
    """
    flags = tuple(zero_grids) or (False,) * (config.n_grids + config.hyper_grids)
    return StreamHeader(
        width=width,
        height=height,
        frame_format=frame_format,
        bit_depth=bit_depth,
        **{name: getattr(config, name) for name in _ARCHITECTURE_NUMBERS},
        arm_hidden=tuple(config.arm_hidden),
        synthesis=tuple(
            SynthesisLayerField(layer.out_channels, layer.kernel, layer.kind, layer.nonlinearity)
            for layer in config.synthesis
        ),
        nn_coding=tuple(
            GroupCoding(exps[group], *codes.get(group, GroupCode())) for group in NN_GROUPS
        ),
        zero_grids=flags[: config.n_grids],
        zero_hyper_grids=flags[config.n_grids :],
        fps_text=fps_text,
    )


# --------------------------------------------------------------------------------------------
# Writing and reading


def write_header(header: StreamHeader, payload: bytes | bytearray | memoryview = b"") -> bytes:
    """Serialise a header (validated when it was built), its CRC-32 included.

    Args:
        header: the header, with the section lengths of ``payload``.
        payload: the nn section then the latent section, which the CRC also covers (what
            :func:`pack_stream` appends after the header).

    Raises:
        ValueError: ``payload`` is not ``nn_bytes + latent_bytes`` long.
    """
    if len(payload) != header.nn_bytes + header.latent_bytes:
        raise ValueError(
            f"payload: expected {header.nn_bytes} + {header.latent_bytes} bytes (the header's "
            f"section lengths), found {len(payload)}"
        )
    writer = BitWriter()
    write_fields(writer, header, header_fields(header.format_version))
    writer.align()
    head = MAGIC + bytes([header.format_version]) + writer.to_bytes()
    return head + zlib.crc32(payload, zlib.crc32(head)).to_bytes(_CRC_BYTES, "big")


def _check_identification(data: bytes) -> int:
    """Magic and version, so that a foreign or older file gets a plain answer; the version."""
    *older, newest = (str(version) for version in READABLE_VERSIONS)
    readable = f"{', '.join(older)} and {newest}" if older else newest
    if data[: len(MAGIC_V1)] == MAGIC_V1:
        raise UnsupportedVersion(
            f"format version 1 (the file starts with {MAGIC_V1!r}): this decoder reads format "
            f"versions {readable}; re-encode the source with this coolchic"
        )
    if data[: len(MAGIC)] != MAGIC:
        raise BitstreamError(
            f"not a coolchic bitstream: expected magic {MAGIC!r}, found {data[: len(MAGIC)]!r}"
        )
    if len(data) < _PREFIX_BYTES:
        raise BitstreamError("header field format_version: missing (truncated file)")
    version = data[len(MAGIC)]
    if version not in READABLE_VERSIONS:
        raise UnsupportedVersion(
            f"format version: this decoder reads versions {readable}, found {version} "
            "(written by a different coolchic release)"
        )
    return version


def _build(fields: dict[str, Any], version: int) -> StreamHeader:
    """The header the read values describe; out-of-range values become bitstream errors."""
    try:
        return StreamHeader(**build(fields, header_fields(version)), format_version=version)
    except FieldError as error:
        kind = LimitExceeded if error.is_limit else BitstreamError
        raise kind(f"header field {error}") from None


def read_header(data: bytes | bytearray | memoryview) -> tuple[StreamHeader, int]:
    """Parse and validate the header at the start of ``data``, and check the file's CRC-32.

    Args:
        data: the file's bytes, at least the header and both sections it declares (the CRC
            covers them); bytes after the sections are not looked at.

    Returns:
        ``(header, header_length)``: the payload starts at ``data[header_length]``.

    Raises:
        BitstreamError: not a coolchic stream (bad magic), a header that ends early, an
            over-long ``ue`` code, non-zero padding bits, an unknown code, or an inconsistent
            field.
        UnsupportedVersion: a format version this decoder does not read (version 1 included).
        LimitExceeded: a count or size beyond the decoder limits, or sections that are not all
            in ``data``.
        ChecksumMismatch: the CRC-32 of header and sections does not match.
    """
    data = bytes(data)
    version = _check_identification(data)
    reader = BitReader(data, 8 * _PREFIX_BYTES)
    fields = read_fields(reader, header_fields(version))
    padding = reader.align()
    if padding:
        raise BitstreamError(
            f"header padding: expected zero bits before byte {reader.position // 8}, "
            f"found 0b{padding:b} (corrupt header)"
        )
    crc_at = reader.position // 8
    length = crc_at + _CRC_BYTES
    if length > len(data):
        raise BitstreamError(
            f"header field crc32: expected {_CRC_BYTES} bytes at offset {crc_at}, found "
            f"{len(data) - crc_at} (truncated file)"
        )
    if "latent_bytes" not in fields:  # version 7 on: the rest of the file
        fields["latent_bytes"] = max(len(data) - length - fields["nn_bytes"], 0)
    declared = fields["nn_bytes"] + fields["latent_bytes"]
    if declared > len(data) - length:
        raise LimitExceeded(
            f"payload: header declares {fields['nn_bytes']} + {fields['latent_bytes']} bytes, "
            f"found {len(data) - length} after the header (truncated file)"
        )
    view = memoryview(data)
    stored = int.from_bytes(view[crc_at:length], "big")
    computed = zlib.crc32(view[length : length + declared], zlib.crc32(view[:crc_at]))
    if stored != computed:
        raise ChecksumMismatch(
            f"CRC-32 of header and sections: stored 0x{stored:08x}, computed 0x{computed:08x} "
            "(corrupted file)"
        )
    return _build(fields, version), length


# --------------------------------------------------------------------------------------------
# Container


def pack_stream(header: StreamHeader, nn_bytes: bytes, latent_bytes: bytes) -> bytes:
    """The complete file: header (with section lengths and CRC filled in) + sections.

    Raises:
        ValueError: sections longer than the architecture and image size allow.
    """
    full = replace(header, nn_bytes=len(nn_bytes), latent_bytes=len(latent_bytes))
    payload = bytes(nn_bytes) + bytes(latent_bytes)
    return write_header(full, payload) + payload


def unpack_stream(data: bytes | bytearray | memoryview) -> tuple[StreamHeader, bytes, bytes]:
    """Split a complete file into its header and the two sections, checking lengths and CRC.

    Returns:
        ``(header, nn_bytes, latent_bytes)``.

    Raises:
        BitstreamError: everything :func:`read_header` raises (a CRC mismatch included); bytes
            after the last section.
    """
    data = bytes(data)
    header, length = read_header(data)
    end = length + header.nn_bytes + header.latent_bytes
    if end != len(data):
        raise BitstreamError(
            f"stream length: expected {end} bytes (header {length} + sections), "
            f"found {len(data)} ({len(data) - end} trailing bytes)"
        )
    return header, data[length : length + header.nn_bytes], data[length + header.nn_bytes : end]
