"""The self-describing stream header and the container around the two payload sections.

A coolchic file is ``header | nn section | latent section``. The header (format version 2, the
full table is in ``docs/bitstream.md``) is the 2-byte magic and the version byte, then one bit
string, most significant bit first: image size, frame format and bit depth, the whole decoder
architecture, the step exponent and exp-Golomb order of each network parameter group, one "all
zero" flag per latent grid, the length of both sections and the optional frame rate, mostly as
unsigned exp-Golomb codes ``ue(v)`` (a typical header is about 30 bytes, against 69 in version 1,
on files of 500 to 2,000 bytes). Zero bits pad it to a byte, and one CRC-32 of everything before
it *and* of both sections ends it.

Torch-free: plain frozen dataclasses and bytes. :func:`read_header` trusts nothing: it checks
magic and version, reads the fields with every loop count and code length bounded, checks that
the declared sections are present and that the CRC matches, and only then validates every field
against the decoder limits of :mod:`coolchic.bitstream.constants`, before the caller allocates
anything.

Every enum has an explicit, permanent integer code (``FRAME_FORMAT_CODES`` …): never reorder
them, only append (a fifth frame format needs a wider field, hence a new format version).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

from coolchic.bitstream.bits import BitReader, BitWriter
from coolchic.bitstream.constants import (
    ARM_MAX_WEIGHT_EXP,
    FORMAT_VERSION,
    MAGIC,
    MAGIC_V1,
    MAX_ARM_HIDDEN_LAYERS,
    MAX_ARM_WIDTH,
    MAX_BIT_DEPTH,
    MAX_BITS_PER_LATENT,
    MAX_EG_BITS_PER_PARAM,
    MAX_EG_ORDER,
    MAX_FPS_CHARS,
    MAX_HEIGHT,
    MAX_N_CTX_ROWCOL,
    MAX_N_GRIDS,
    MAX_PRECONCAT_KERNEL,
    MAX_SECTION_BYTES,
    MAX_STEP_EXPONENT,
    MAX_SYNTHESIS_CHANNELS,
    MAX_SYNTHESIS_KERNEL,
    MAX_SYNTHESIS_LAYERS,
    MAX_UPSAMPLING_KERNEL,
    MAX_WIDTH,
    MIN_BIT_DEPTH,
    MIN_UPSAMPLING_KERNEL,
    NN_GROUPS,
    OUT_CHANNELS,
    RANGE_CODER_SLACK_WORDS,
)
from coolchic.bitstream.expgolomb import read_ue, ue_bits, write_ue
from coolchic.errors import BitstreamError, ChecksumMismatch, LimitExceeded, UnsupportedVersion
from coolchic.model.layout import grid_shapes

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
    "max_latent_bytes",
    "pack_stream",
    "read_header",
    "unpack_stream",
    "write_header",
]

FrameFormat = Literal["rgb", "yuv420", "yuv444"]
LayerKind = Literal["linear", "residual"]
Nonlinearity = Literal["relu", "none"]

#: Permanent codes of the frame formats (a 2-bit field).
FRAME_FORMAT_CODES: Final[Mapping[str, int]] = {"rgb": 0, "yuv420": 1, "yuv444": 2}
#: Permanent codes of the synthesis layer kinds (a 1-bit field).
LAYER_KIND_CODES: Final[Mapping[str, int]] = {"linear": 0, "residual": 1}
#: Permanent codes of the synthesis non-linearities (a 1-bit field).
NONLINEARITY_CODES: Final[Mapping[str, int]] = {"none": 0, "relu": 1}

_FPS_PATTERN = re.compile(r"[0-9]+(\.[0-9]+)?")

# Widths of the fixed-width fields. The step exponent and the exp-Golomb order are fixed-width
# because every group carries one and they are spread over 3..12: 9 bits a group, where two
# ue codes would take about 11.
_FRAME_FORMAT_BITS: Final = 2
_LAYER_FLAG_BITS: Final = 1
_EXP_BITS: Final = MAX_STEP_EXPONENT.bit_length()
_ORDER_BITS: Final = MAX_EG_ORDER.bit_length()
#: The frame rate is written 4 bits a character: code i is ``_FPS_ALPHABET[i]``, 11..15 unused.
_FPS_CHAR_BITS: Final = 4
_FPS_ALPHABET: Final = "0123456789."
#: Magic and version byte, before the bit string.
_PREFIX_BYTES: Final = len(MAGIC) + 1
_CRC_BYTES: Final = 4


def _header_bytes(field_bits: int) -> int:
    """Header length for a bit string of ``field_bits``: prefix, padded bits, CRC."""
    return _PREFIX_BYTES + -(-field_bits // 8) + _CRC_BYTES


_CODING_BITS: Final = len(NN_GROUPS) * (_EXP_BITS + _ORDER_BITS)
_MAX_LAYER_BITS: Final = (
    ue_bits(MAX_SYNTHESIS_CHANNELS - 1)
    + ue_bits((MAX_SYNTHESIS_KERNEL - 1) // 2)
    + 2 * _LAYER_FLAG_BITS
)
#: Smallest header: 1x1 RGB, one 3-channel 1x1 layer, no section, no frame rate.
MIN_HEADER_BYTES: Final = _header_bytes(
    9  # one bit each: width, height, bit_depth, n_grids, n_ctx, 2 kernels, 2 layer counts
    + _FRAME_FORMAT_BITS
    + ue_bits(OUT_CHANNELS - 1)
    + 1
    + 2 * _LAYER_FLAG_BITS
    + _CODING_BITS
    + 1  # zero flag of the one grid
    + 3  # one bit each: nn_bytes, latent words, frame-rate length
)
#: A bound on the largest header (every field at its limit; not every combination is valid).
MAX_HEADER_BYTES: Final = _header_bytes(
    ue_bits(MAX_WIDTH - 1)
    + ue_bits(MAX_HEIGHT - 1)
    + _FRAME_FORMAT_BITS
    + ue_bits(MAX_BIT_DEPTH - MIN_BIT_DEPTH)
    + ue_bits(MAX_N_GRIDS - 1)
    + ue_bits(MAX_N_CTX_ROWCOL - 1)
    + ue_bits(MAX_UPSAMPLING_KERNEL // 2 - 2)
    + ue_bits((MAX_PRECONCAT_KERNEL + 1) // 2)
    + ue_bits(MAX_ARM_HIDDEN_LAYERS)
    + MAX_ARM_HIDDEN_LAYERS * ue_bits(MAX_ARM_WIDTH - 1)
    + ue_bits(MAX_SYNTHESIS_LAYERS - 1)
    + MAX_SYNTHESIS_LAYERS * _MAX_LAYER_BITS
    + _CODING_BITS
    + MAX_N_GRIDS
    + ue_bits(MAX_SECTION_BYTES)
    + ue_bits(MAX_SECTION_BYTES // 4)
    + ue_bits(MAX_FPS_CHARS)
    + MAX_FPS_CHARS * _FPS_CHAR_BITS
)


class _FieldError(ValueError):
    """A header field out of range; ``is_limit`` marks sizes and counts (→ LimitExceeded)."""

    def __init__(self, message: str, *, is_limit: bool) -> None:
        super().__init__(message)
        self.is_limit = is_limit


def _field_error(name: str, expected: str, found: object, *, is_limit: bool) -> _FieldError:
    return _FieldError(f"{name}: expected {expected}, found {found!r}", is_limit=is_limit)


def _check_int(value: object, low: int, high: int, name: str, *, is_limit: bool = True) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _field_error(name, f"an integer in {low}..{high}", value, is_limit=is_limit)


def _check_code(value: object, codes: Mapping[str, int], name: str) -> None:
    if value not in codes:
        raise _field_error(name, f"one of {tuple(codes)}", value, is_limit=False)


def max_latent_bytes(n_symbols: int) -> int:
    """Largest latent section that ``n_symbols`` coded latents can produce (bytes).

    Every symbol costs at most 24 bits (constriction's leaky quantiser keeps a probability of
    at least 2^-24 for each value of the alphabet), plus the coder's final state; no symbol,
    no bytes.
    """
    if n_symbols <= 0:
        return 0
    return 4 * (-(-n_symbols * MAX_BITS_PER_LATENT // 32) + RANGE_CODER_SLACK_WORDS)


@dataclass(frozen=True)
class SynthesisLayerField:
    """One synthesis layer as written in the header (``ue(out − 1)``, ``ue((kernel − 1) / 2)``,
    then one bit each for kind and non-linearity).

    Attributes:
        out_channels: 1..128.
        kernel: odd, 1..15.
        kind: ``"linear"`` (code 0) or ``"residual"`` (code 1, needs in == out channels).
        nonlinearity: ``"none"`` (code 0) or ``"relu"`` (code 1).
    """

    out_channels: int
    kernel: int
    kind: LayerKind
    nonlinearity: Nonlinearity

    def __post_init__(self) -> None:
        _check_int(self.out_channels, 1, MAX_SYNTHESIS_CHANNELS, "synthesis out_channels")
        _check_int(self.kernel, 1, MAX_SYNTHESIS_KERNEL, "synthesis kernel")
        if self.kernel % 2 == 0:
            raise _field_error("synthesis kernel", "an odd size", self.kernel, is_limit=False)
        _check_code(self.kind, LAYER_KIND_CODES, "synthesis kind")
        _check_code(self.nonlinearity, NONLINEARITY_CODES, "synthesis nonlinearity")


@dataclass(frozen=True)
class GroupCoding:
    """How one (module, weight|bias) parameter group is coded (5 + 4 bits in the header).

    Attributes:
        exp: step exponent, the quantisation step is ``2^-exp``; 0..31.
        order: exp-Golomb order, 0..12.
    """

    exp: int = 0
    order: int = 0

    def __post_init__(self) -> None:
        _check_int(self.exp, 0, MAX_STEP_EXPONENT, "step exponent")
        _check_int(self.order, 0, MAX_EG_ORDER, "exp-Golomb order")


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
        n_ctx_rowcol: N, the ARM context is ``2N² + 2N`` values; 1..4.
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
        nn_bytes: length of the network-parameter section.
        latent_bytes: length of the latent section (a multiple of 4).
        fps_text: source frame rate as written in YUV file names (``"50"``, ``"29.97"``), at
            most 16 characters; ``""`` when unknown. The source name is not stored: a decoder
            names its output after the ``.cool`` file.
        format_version: must be :data:`~coolchic.bitstream.constants.FORMAT_VERSION`.

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
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.format_version != FORMAT_VERSION:
            raise _field_error(
                "format_version", str(FORMAT_VERSION), self.format_version, is_limit=False
            )
        _check_code(self.frame_format, FRAME_FORMAT_CODES, "frame_format")
        _check_int(self.width, 1, MAX_WIDTH, "width")
        _check_int(self.height, 1, MAX_HEIGHT, "height")
        if self.frame_format == "yuv420" and (self.width % 2 or self.height % 2):
            raise _field_error(
                "yuv420 size", "even width and height", (self.width, self.height), is_limit=False
            )
        _check_int(self.bit_depth, MIN_BIT_DEPTH, MAX_BIT_DEPTH, "bit_depth", is_limit=False)
        _check_int(self.n_grids, 1, MAX_N_GRIDS, "n_grids")
        _check_int(self.n_ctx_rowcol, 1, MAX_N_CTX_ROWCOL, "n_ctx_rowcol")
        self._check_arm()
        _check_int(
            self.upsampling_kernel,
            MIN_UPSAMPLING_KERNEL,
            MAX_UPSAMPLING_KERNEL,
            "upsampling_kernel",
        )
        if self.upsampling_kernel % 2:
            raise _field_error(
                "upsampling_kernel", "an even size", self.upsampling_kernel, is_limit=False
            )
        _check_int(self.preconcat_kernel, 0, MAX_PRECONCAT_KERNEL, "preconcat_kernel")
        if self.preconcat_kernel and self.preconcat_kernel % 2 == 0:
            raise _field_error(
                "preconcat_kernel", "0 or an odd size", self.preconcat_kernel, is_limit=False
            )
        self._check_synthesis()
        self._check_coding()
        self._check_sections()
        self._check_metadata()

    def _check_arm(self) -> None:
        if not isinstance(self.arm_hidden, tuple):
            raise _field_error("arm_hidden", "a tuple", self.arm_hidden, is_limit=False)
        _check_int(len(self.arm_hidden), 0, MAX_ARM_HIDDEN_LAYERS, "number of ARM hidden layers")
        for width in self.arm_hidden:
            _check_int(width, 1, MAX_ARM_WIDTH, "ARM hidden width")

    def _check_synthesis(self) -> None:
        if not isinstance(self.synthesis, tuple):
            raise _field_error("synthesis", "a tuple", self.synthesis, is_limit=False)
        _check_int(len(self.synthesis), 1, MAX_SYNTHESIS_LAYERS, "number of synthesis layers")
        channels = self.n_grids
        for index, layer in enumerate(self.synthesis):
            if not isinstance(layer, SynthesisLayerField):
                raise _field_error(
                    f"synthesis layer {index}", "a SynthesisLayerField", layer, is_limit=False
                )
            if layer.kind == "residual" and layer.out_channels != channels:
                raise _field_error(
                    f"synthesis layer {index} (residual) out_channels",
                    f"its input channel count {channels}",
                    layer.out_channels,
                    is_limit=False,
                )
            channels = layer.out_channels
        if channels != OUT_CHANNELS:
            raise _field_error(
                "last synthesis layer out_channels", str(OUT_CHANNELS), channels, is_limit=False
            )

    def _check_coding(self) -> None:
        if not (isinstance(self.nn_coding, tuple) and len(self.nn_coding) == len(NN_GROUPS)):
            raise _field_error(
                "nn_coding", f"{len(NN_GROUPS)} GroupCoding entries", self.nn_coding, is_limit=False
            )
        for (module, kind), coding in zip(NN_GROUPS, self.nn_coding, strict=True):
            if not isinstance(coding, GroupCoding):
                raise _field_error(
                    f"{module} {kind} coding", "a GroupCoding", coding, is_limit=False
                )
        arm_weight = self.group_coding("arm", "weight")
        _check_int(arm_weight.exp, 0, ARM_MAX_WEIGHT_EXP, "arm weight step exponent")

    def _check_sections(self) -> None:
        if self.zero_grids != () and not (
            isinstance(self.zero_grids, tuple)
            and len(self.zero_grids) == self.n_grids
            and all(isinstance(flag, bool) for flag in self.zero_grids)
        ):
            raise _field_error(
                "zero_grids", f"() or {self.n_grids} booleans", self.zero_grids, is_limit=False
            )
        if not any(self.zero_grids):
            object.__setattr__(self, "zero_grids", ())  # canonical form: no grid is zero
        _check_int(self.nn_bytes, 0, self.max_nn_bytes, "nn_bytes")
        _check_int(self.latent_bytes, 0, self.max_latent_bytes, "latent_bytes")
        if self.latent_bytes % 4:
            raise _field_error("latent_bytes", "a multiple of 4", self.latent_bytes, is_limit=False)

    def _check_metadata(self) -> None:
        if not isinstance(self.fps_text, str):
            raise _field_error("fps_text", "a string", self.fps_text, is_limit=False)
        _check_int(len(self.fps_text), 0, MAX_FPS_CHARS, "fps_text length")
        if self.fps_text and not _FPS_PATTERN.fullmatch(self.fps_text):
            raise _field_error(
                "fps_text", "digits with an optional decimal part", self.fps_text, is_limit=False
            )

    # ----------------------------------------------------------------------------------------

    @property
    def grid_shapes(self) -> tuple[tuple[int, int], ...]:
        """``(h, w)`` of each latent grid, grid 0 (full resolution) first."""
        return tuple(grid_shapes(self.height, self.width, self.n_grids))

    @property
    def zero_grid_flags(self) -> tuple[bool, ...]:
        """``n_grids`` booleans: True for a grid that is all zero and not coded."""
        return self.zero_grids or (False,) * self.n_grids

    @property
    def n_contexts(self) -> int:
        """Width of the ARM input, ``2N² + 2N``."""
        return 2 * self.n_ctx_rowcol * (self.n_ctx_rowcol + 1)

    @property
    def n_coded_latents(self) -> int:
        """Number of latents in the latent section (the grids not flagged all-zero)."""
        return sum(
            h * w
            for (h, w), zero in zip(self.grid_shapes, self.zero_grid_flags, strict=True)
            if not zero
        )

    @property
    def max_latent_bytes(self) -> int:
        """Largest latent section the coded grids can produce (see :func:`max_latent_bytes`)."""
        return max_latent_bytes(self.n_coded_latents)

    @property
    def max_n_parameters(self) -> int:
        """A generous bound on the number of network parameters of this architecture.

        ARM and synthesis are counted exactly (weights and biases of every layer). The
        upsampling is bounded by one full 2-D transposed-conv and one full 2-D pre-concat kernel
        and two biases per level, whatever the model's actual parametrisation.
        """
        arm = 0
        width = self.n_contexts
        for out in (*self.arm_hidden, 2):
            arm += width * out + out
            width = out
        synthesis = 0
        channels = self.n_grids
        for layer in self.synthesis:
            synthesis += channels * layer.out_channels * layer.kernel**2 + layer.out_channels
            channels = layer.out_channels
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

    @property
    def nn_exps(self) -> dict[tuple[str, str], int]:
        """Step exponent of each ``(module, kind)`` group."""
        return {group: coding.exp for group, coding in zip(NN_GROUPS, self.nn_coding, strict=True)}

    @property
    def nn_orders(self) -> dict[tuple[str, str], int]:
        """Exp-Golomb order of each ``(module, kind)`` group."""
        return {
            group: coding.order for group, coding in zip(NN_GROUPS, self.nn_coding, strict=True)
        }


# --------------------------------------------------------------------------------------------
# Writing


def _write_fields(writer: BitWriter, header: StreamHeader) -> None:
    """The bit string, in the order of docs/bitstream.md §1."""
    write_ue(writer, header.width - 1)
    write_ue(writer, header.height - 1)
    writer.write_uint(FRAME_FORMAT_CODES[header.frame_format], _FRAME_FORMAT_BITS)
    write_ue(writer, header.bit_depth - MIN_BIT_DEPTH)
    write_ue(writer, header.n_grids - 1)
    write_ue(writer, header.n_ctx_rowcol - 1)
    write_ue(writer, header.upsampling_kernel // 2 - 2)
    write_ue(writer, (header.preconcat_kernel + 1) // 2)  # 0 stays 0 (no pre-concatenation)
    write_ue(writer, len(header.arm_hidden))
    for width in header.arm_hidden:
        write_ue(writer, width - 1)
    write_ue(writer, len(header.synthesis) - 1)
    for layer in header.synthesis:
        write_ue(writer, layer.out_channels - 1)
        write_ue(writer, (layer.kernel - 1) // 2)
        writer.write_uint(LAYER_KIND_CODES[layer.kind], _LAYER_FLAG_BITS)
        writer.write_uint(NONLINEARITY_CODES[layer.nonlinearity], _LAYER_FLAG_BITS)
    for coding in header.nn_coding:
        writer.write_uint(coding.exp, _EXP_BITS)
        writer.write_uint(coding.order, _ORDER_BITS)
    for zero in header.zero_grid_flags:
        writer.write_bit(int(zero))
    write_ue(writer, header.nn_bytes)
    write_ue(writer, header.latent_bytes // 4)
    write_ue(writer, len(header.fps_text))
    for char in header.fps_text:
        writer.write_uint(_FPS_ALPHABET.index(char), _FPS_CHAR_BITS)


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
    _write_fields(writer, header)
    writer.align()
    head = MAGIC + bytes([header.format_version]) + writer.to_bytes()
    return head + zlib.crc32(payload, zlib.crc32(head)).to_bytes(_CRC_BYTES, "big")


# --------------------------------------------------------------------------------------------
# Reading


class _FieldReader:
    """Reads the header's bit string; every error names the field it was reading."""

    def __init__(self, data: bytes) -> None:
        self.bits = BitReader(data, 8 * _PREFIX_BYTES)

    def ue(self, name: str, offset: int = 0) -> int:
        """``ue(v) + offset``; a truncated or over-long code raises BitstreamError."""
        return read_ue(self.bits, f"header field {name}") + offset

    def count(self, name: str, high: int, offset: int = 0) -> int:
        """A value that sizes a loop of the parser: refused above ``high`` before it is used."""
        value = self.ue(name, offset)
        if value > high:
            raise LimitExceeded(f"header field {name}: expected at most {high}, found {value}")
        return value

    def uint(self, n_bits: int, name: str) -> int:
        return self.bits.read_uint(n_bits, f"header field {name}")

    def code(self, n_bits: int, codes: Mapping[str, int], name: str) -> str:
        value = self.uint(n_bits, name)
        for label, code in codes.items():
            if code == value:
                return label
        raise BitstreamError(
            f"header field {name}: expected a code in {dict(codes)}, found {value}"
        )


def _check_identification(data: bytes) -> None:
    """Magic and version, so that a foreign or older file gets a plain answer."""
    if data[: len(MAGIC_V1)] == MAGIC_V1:
        raise UnsupportedVersion(
            f"format version 1 (the file starts with {MAGIC_V1!r}): this decoder reads format "
            f"version {FORMAT_VERSION} only; re-encode the source with this coolchic"
        )
    if data[: len(MAGIC)] != MAGIC:
        raise BitstreamError(
            f"not a coolchic bitstream: expected magic {MAGIC!r}, found {data[: len(MAGIC)]!r}"
        )
    if len(data) < _PREFIX_BYTES:
        raise BitstreamError("header field format_version: missing (truncated file)")
    version = data[len(MAGIC)]
    if version != FORMAT_VERSION:
        raise UnsupportedVersion(
            f"format version: this decoder reads version {FORMAT_VERSION}, found {version} "
            "(written by a different coolchic release)"
        )


def _parse_fields(reader: _FieldReader) -> dict[str, Any]:
    """The raw field values, as :class:`StreamHeader` arguments; only loop counts are checked."""
    fields: dict[str, Any] = {
        "width": reader.ue("width", 1),
        "height": reader.ue("height", 1),
        "frame_format": reader.code(_FRAME_FORMAT_BITS, FRAME_FORMAT_CODES, "frame_format"),
        "bit_depth": reader.ue("bit_depth", MIN_BIT_DEPTH),
        "n_grids": reader.count("n_grids", MAX_N_GRIDS, 1),
        "n_ctx_rowcol": reader.ue("n_ctx_rowcol", 1),
        "upsampling_kernel": 2 * reader.ue("upsampling_kernel", 2),
    }
    preconcat = reader.ue("preconcat_kernel")
    fields["preconcat_kernel"] = 2 * preconcat - 1 if preconcat else 0
    n_hidden = reader.count("n_arm_hidden", MAX_ARM_HIDDEN_LAYERS)
    fields["arm_hidden"] = tuple(reader.ue(f"arm_hidden[{i}]", 1) for i in range(n_hidden))
    layers = []
    for index in range(reader.count("n_synthesis_layers", MAX_SYNTHESIS_LAYERS, 1)):
        layers.append(
            (
                reader.ue(f"synthesis[{index}].out_channels", 1),
                2 * reader.ue(f"synthesis[{index}].kernel") + 1,
                reader.code(_LAYER_FLAG_BITS, LAYER_KIND_CODES, f"synthesis[{index}].kind"),
                reader.code(
                    _LAYER_FLAG_BITS, NONLINEARITY_CODES, f"synthesis[{index}].nonlinearity"
                ),
            )
        )
    fields["synthesis"] = layers
    fields["nn_coding"] = [
        (reader.uint(_EXP_BITS, f"{m}.{k}.step_exp"), reader.uint(_ORDER_BITS, f"{m}.{k}.eg_order"))
        for m, k in NN_GROUPS
    ]
    fields["zero_grids"] = tuple(
        bool(reader.uint(1, f"zero_grids[{i}]")) for i in range(fields["n_grids"])
    )
    fields["nn_bytes"] = reader.ue("nn_bytes")
    fields["latent_bytes"] = 4 * reader.ue("latent_words")
    chars = []
    for index in range(reader.count("fps length", MAX_FPS_CHARS)):
        code = reader.uint(_FPS_CHAR_BITS, f"fps[{index}]")
        if code >= len(_FPS_ALPHABET):
            raise BitstreamError(
                f"header field fps[{index}]: expected a code in 0..{len(_FPS_ALPHABET) - 1} "
                f"(digits, then '.'), found {code}"
            )
        chars.append(_FPS_ALPHABET[code])
    fields["fps_text"] = "".join(chars)
    return fields


def _build(fields: dict[str, Any]) -> StreamHeader:
    """The header the parsed fields describe; out-of-range values become bitstream errors."""
    try:
        return StreamHeader(
            **{
                **fields,
                "synthesis": tuple(SynthesisLayerField(*layer) for layer in fields["synthesis"]),
                "nn_coding": tuple(GroupCoding(exp, order) for exp, order in fields["nn_coding"]),
            }
        )
    except _FieldError as error:
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
        UnsupportedVersion: a format version other than this decoder's (version 1 included).
        LimitExceeded: a count or size beyond the decoder limits, or sections that are not all
            in ``data``.
        ChecksumMismatch: the CRC-32 of header and sections does not match.
    """
    data = bytes(data)
    _check_identification(data)
    reader = _FieldReader(data)
    fields = _parse_fields(reader)
    padding = reader.bits.align()
    if padding:
        raise BitstreamError(
            f"header padding: expected zero bits before byte {reader.bits.position // 8}, "
            f"found 0b{padding:b} (corrupt header)"
        )
    crc_at = reader.bits.position // 8
    length = crc_at + _CRC_BYTES
    if length > len(data):
        raise BitstreamError(
            f"header field crc32: expected {_CRC_BYTES} bytes at offset {crc_at}, found "
            f"{len(data) - crc_at} (truncated file)"
        )
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
    return _build(fields), length


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
