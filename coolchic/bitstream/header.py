"""The self-describing stream header and the container around the two payload sections.

A coolchic file is ``header | nn section | latent section``. The header is byte-aligned, made of
big-endian fixed-width fields (the full table is in ``docs/bitstream.md``): magic and format
version, image size, frame format and bit depth, the whole decoder architecture, the step
exponent and exp-Golomb order of each network parameter group, one "all zero" flag per latent
grid, the byte length of both sections, a CRC32 of the payload, optional source-name metadata,
and a CRC32 of the header itself.

Torch-free: plain frozen dataclasses and bytes. :func:`read_header` trusts nothing: it checks
magic, version, header length and checksum, then every field against the decoder limits of
:mod:`coolchic.bitstream.constants` and the section lengths against the bytes actually present,
before the caller allocates anything.

Every enum has an explicit, permanent integer code (``FRAME_FORMAT_CODES`` …): never reorder
them, only append.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Final, Literal

from coolchic.bitstream.constants import (
    ARM_MAX_WEIGHT_EXP,
    FORMAT_VERSION,
    MAGIC,
    MAX_ARM_HIDDEN_LAYERS,
    MAX_ARM_WIDTH,
    MAX_BIT_DEPTH,
    MAX_BITS_PER_LATENT,
    MAX_EG_BITS_PER_PARAM,
    MAX_EG_ORDER,
    MAX_FPS_BYTES,
    MAX_HEIGHT,
    MAX_N_CTX_ROWCOL,
    MAX_N_GRIDS,
    MAX_NAME_BYTES,
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
from coolchic.errors import BitstreamError, ChecksumMismatch, LimitExceeded, UnsupportedVersion

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
    "grid_shapes",
    "max_latent_bytes",
    "pack_stream",
    "read_header",
    "unpack_stream",
    "write_header",
]

FrameFormat = Literal["rgb", "yuv420", "yuv444"]
LayerKind = Literal["linear", "residual"]
Nonlinearity = Literal["relu", "none"]

#: Permanent codes of the frame formats.
FRAME_FORMAT_CODES: Final[Mapping[str, int]] = {"rgb": 0, "yuv420": 1, "yuv444": 2}
#: Permanent codes of the synthesis layer kinds.
LAYER_KIND_CODES: Final[Mapping[str, int]] = {"linear": 0, "residual": 1}
#: Permanent codes of the synthesis non-linearities.
NONLINEARITY_CODES: Final[Mapping[str, int]] = {"none": 0, "relu": 1}

_FPS_PATTERN = re.compile(r"[0-9]+(\.[0-9]+)?")
_FORBIDDEN_NAME_CHARS = frozenset('/\\:*?"<>|')

#: Bytes of the header without the variable parts (ARM widths, synthesis layers, name, fps).
_FIXED_BYTES: Final = 51
_LAYER_BYTES: Final = 4
#: Smallest header (one synthesis layer, nothing optional) and largest one.
MIN_HEADER_BYTES: Final = _FIXED_BYTES + _LAYER_BYTES
MAX_HEADER_BYTES: Final = (
    _FIXED_BYTES
    + MAX_ARM_HIDDEN_LAYERS
    + _LAYER_BYTES * MAX_SYNTHESIS_LAYERS
    + MAX_NAME_BYTES
    + MAX_FPS_BYTES
)
_VERSION_END: Final = len(MAGIC) + 1


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


def grid_shapes(height: int, width: int, n_grids: int) -> tuple[tuple[int, int], ...]:
    """``(ceil(H / 2^i), ceil(W / 2^i))`` of each latent grid, grid 0 (finest) first."""
    return tuple((-(-height // (1 << i)), -(-width // (1 << i))) for i in range(n_grids))


@dataclass(frozen=True)
class SynthesisLayerField:
    """One synthesis layer as written in the header (4 bytes).

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
    """How one (module, weight|bias) parameter group is coded.

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
        payload_crc: CRC32 of the two sections (as :func:`zlib.crc32`).
        name: source name (UTF-8, at most 255 bytes, no path separators or control
            characters); ``""`` when unknown.
        fps_text: source frame rate as written in YUV file names (``"50"``, ``"29.97"``), at
            most 16 bytes; ``""`` when unknown.
        format_version: must be :data:`~coolchic.bitstream.constants.FORMAT_VERSION`.
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
    payload_crc: int = 0
    name: str = ""
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
        _check_int(self.payload_crc, 0, 0xFFFFFFFF, "payload_crc", is_limit=False)

    def _check_metadata(self) -> None:
        if not isinstance(self.name, str):
            raise _field_error("name", "a string", self.name, is_limit=False)
        name_bytes = self.name.encode("utf-8", errors="strict")
        _check_int(len(name_bytes), 0, MAX_NAME_BYTES, "name length in UTF-8 bytes")
        if self.name in {".", ".."} or any(
            char in _FORBIDDEN_NAME_CHARS or ord(char) < 32 or ord(char) == 127
            for char in self.name
        ):
            raise _field_error(
                "name",
                "a file-name stem without path separators, reserved or control characters",
                self.name,
                is_limit=False,
            )
        if not isinstance(self.fps_text, str):
            raise _field_error("fps_text", "a string", self.fps_text, is_limit=False)
        _check_int(len(self.fps_text.encode("utf-8")), 0, MAX_FPS_BYTES, "fps_text length")
        if self.fps_text and not _FPS_PATTERN.fullmatch(self.fps_text):
            raise _field_error(
                "fps_text", "digits with an optional decimal part", self.fps_text, is_limit=False
            )

    # ----------------------------------------------------------------------------------------

    @property
    def grid_shapes(self) -> tuple[tuple[int, int], ...]:
        """``(h, w)`` of each latent grid, grid 0 (full resolution) first."""
        return grid_shapes(self.height, self.width, self.n_grids)

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


def _u8(value: int) -> bytes:
    return value.to_bytes(1, "big")


def _u16(value: int) -> bytes:
    return value.to_bytes(2, "big")


def _u32(value: int) -> bytes:
    return value.to_bytes(4, "big")


def write_header(header: StreamHeader) -> bytes:
    """Serialise a header (validated when it was built) to bytes, header CRC32 included."""
    name = header.name.encode("utf-8")
    fps = header.fps_text.encode("ascii")
    body = bytearray()
    body += _u16(header.width) + _u16(header.height)
    body += _u8(FRAME_FORMAT_CODES[header.frame_format]) + _u8(header.bit_depth)
    body += _u8(header.n_grids) + _u8(header.n_ctx_rowcol)
    body += _u8(header.upsampling_kernel) + _u8(header.preconcat_kernel)
    body += _u8(len(header.arm_hidden)) + bytes(header.arm_hidden)
    body += _u8(len(header.synthesis))
    for layer in header.synthesis:
        body += _u8(layer.out_channels) + _u8(layer.kernel)
        body += _u8(LAYER_KIND_CODES[layer.kind]) + _u8(NONLINEARITY_CODES[layer.nonlinearity])
    for coding in header.nn_coding:
        body += _u8(coding.exp) + _u8(coding.order)
    body += _u16(sum(1 << i for i, zero in enumerate(header.zero_grid_flags) if zero))
    body += _u32(header.nn_bytes) + _u32(header.latent_bytes) + _u32(header.payload_crc)
    body += _u8(len(name)) + name + _u8(len(fps)) + fps
    length = _VERSION_END + 2 + len(body) + 4
    head = MAGIC + _u8(header.format_version) + _u16(length) + bytes(body)
    return head + _u32(zlib.crc32(head))


# --------------------------------------------------------------------------------------------
# Reading


class _Cursor:
    """Reads big-endian fields from ``data[pos:end]``; running out raises BitstreamError."""

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data = data
        self.pos = pos
        self.end = end

    def take(self, n_bytes: int, name: str) -> bytes:
        if self.pos + n_bytes > self.end:
            raise BitstreamError(
                f"header field {name}: expected {n_bytes} bytes at offset {self.pos}, "
                f"found {max(self.end - self.pos, 0)} (header too short)"
            )
        chunk = self.data[self.pos : self.pos + n_bytes]
        self.pos += n_bytes
        return chunk

    def uint(self, n_bytes: int, name: str) -> int:
        return int.from_bytes(self.take(n_bytes, name), "big")


def _decode_code(code: int, codes: Mapping[str, int], name: str) -> str:
    for label, value in codes.items():
        if value == code:
            return label
    raise BitstreamError(f"header field {name}: expected a code in {dict(codes)}, found {code}")


def _limit(value: int, high: int, name: str) -> int:
    if value > high:
        raise LimitExceeded(f"header field {name}: expected at most {high}, found {value}")
    return value


def read_header(data: bytes | bytearray | memoryview) -> tuple[StreamHeader, int]:
    """Parse and validate the header at the start of ``data``.

    Args:
        data: the file's bytes (at least the whole header; normally the whole file, so that
            the section lengths can be checked against what is present).

    Returns:
        ``(header, header_length)``: the payload starts at ``data[header_length]``.

    Raises:
        BitstreamError: not a coolchic stream (bad magic), a truncated header, an unknown
            enum code, or an inconsistent field.
        UnsupportedVersion: a format version other than this decoder's.
        ChecksumMismatch: the header CRC32 does not match.
        LimitExceeded: a size or count beyond the decoder limits, or section lengths that do
            not fit in ``data``.
    """
    data = bytes(data)
    if data[: len(MAGIC)] != MAGIC:
        raise BitstreamError(
            f"not a coolchic bitstream: expected magic {MAGIC!r}, found {data[: len(MAGIC)]!r}"
        )
    cursor = _Cursor(data, len(MAGIC), len(data))
    version = cursor.uint(1, "format_version")
    if version != FORMAT_VERSION:
        raise UnsupportedVersion(
            f"format version: this decoder reads version {FORMAT_VERSION}, found {version} "
            "(written by a different coolchic release)"
        )
    length = cursor.uint(2, "header_bytes")
    if not MIN_HEADER_BYTES <= length <= MAX_HEADER_BYTES:
        raise LimitExceeded(
            f"header field header_bytes: expected {MIN_HEADER_BYTES}..{MAX_HEADER_BYTES}, "
            f"found {length}"
        )
    if length > len(data):
        raise LimitExceeded(f"header: expected {length} bytes, found {len(data)} (truncated file)")
    stored = int.from_bytes(data[length - 4 : length], "big")
    computed = zlib.crc32(data[: length - 4])
    if stored != computed:
        raise ChecksumMismatch(
            f"header CRC32: stored 0x{stored:08x}, computed 0x{computed:08x} (corrupted header)"
        )
    cursor.end = length - 4
    header = _parse_fields(cursor)
    if cursor.pos != cursor.end:
        raise BitstreamError(
            f"header: fields end at byte {cursor.pos}, header_bytes says {cursor.end + 4} - 4"
        )
    available = len(data) - length
    declared = header.nn_bytes + header.latent_bytes
    if declared > available:
        raise LimitExceeded(
            f"payload: header declares {header.nn_bytes} + {header.latent_bytes} bytes, "
            f"found {available} after the header (truncated file)"
        )
    return header, length


def _parse_fields(cursor: _Cursor) -> StreamHeader:
    """Read the fields after ``header_bytes``; limits are checked before every count is used."""
    width = cursor.uint(2, "width")
    height = cursor.uint(2, "height")
    frame_format = _decode_code(cursor.uint(1, "frame_format"), FRAME_FORMAT_CODES, "frame_format")
    bit_depth = cursor.uint(1, "bit_depth")
    n_grids = cursor.uint(1, "n_grids")
    n_ctx_rowcol = cursor.uint(1, "n_ctx_rowcol")
    upsampling_kernel = cursor.uint(1, "upsampling_kernel")
    preconcat_kernel = cursor.uint(1, "preconcat_kernel")
    n_hidden = _limit(cursor.uint(1, "n_arm_hidden"), MAX_ARM_HIDDEN_LAYERS, "n_arm_hidden")
    arm_hidden = tuple(cursor.take(n_hidden, "arm_hidden"))
    n_layers = _limit(
        cursor.uint(1, "n_synthesis_layers"), MAX_SYNTHESIS_LAYERS, "n_synthesis_layers"
    )
    layers: list[tuple[int, int, str, str]] = []
    for index in range(n_layers):
        out_channels = cursor.uint(1, f"synthesis[{index}].out_channels")
        kernel = cursor.uint(1, f"synthesis[{index}].kernel")
        kind = _decode_code(
            cursor.uint(1, f"synthesis[{index}].kind"), LAYER_KIND_CODES, f"synthesis[{index}].kind"
        )
        nonlinearity = _decode_code(
            cursor.uint(1, f"synthesis[{index}].nonlinearity"),
            NONLINEARITY_CODES,
            f"synthesis[{index}].nonlinearity",
        )
        layers.append((out_channels, kernel, kind, nonlinearity))
    codings = [
        (cursor.uint(1, f"{m}.{k}.step_exp"), cursor.uint(1, f"{m}.{k}.eg_order"))
        for m, k in NN_GROUPS
    ]
    zero_mask = cursor.uint(2, "zero_grids")
    if zero_mask >> n_grids:
        raise BitstreamError(
            f"header field zero_grids: expected flags for {n_grids} grids only, "
            f"found mask 0x{zero_mask:04x}"
        )
    nn_bytes = cursor.uint(4, "nn_bytes")
    latent_bytes = cursor.uint(4, "latent_bytes")
    payload_crc = cursor.uint(4, "payload_crc32")
    name_raw = cursor.take(cursor.uint(1, "name_bytes"), "name")
    fps_length = _limit(cursor.uint(1, "fps_bytes"), MAX_FPS_BYTES, "fps_bytes")
    fps_raw = cursor.take(fps_length, "fps")
    try:
        name = name_raw.decode("utf-8")
        fps_text = fps_raw.decode("ascii")
    except UnicodeDecodeError as error:
        raise BitstreamError(f"header field name/fps: expected valid text ({error})") from None
    try:
        return StreamHeader(
            width=width,
            height=height,
            frame_format=frame_format,  # type: ignore[arg-type]
            bit_depth=bit_depth,
            n_grids=n_grids,
            n_ctx_rowcol=n_ctx_rowcol,
            arm_hidden=arm_hidden,
            upsampling_kernel=upsampling_kernel,
            preconcat_kernel=preconcat_kernel,
            synthesis=tuple(SynthesisLayerField(*layer) for layer in layers),  # type: ignore[arg-type]
            nn_coding=tuple(GroupCoding(exp, order) for exp, order in codings),
            zero_grids=tuple(bool(zero_mask >> i & 1) for i in range(n_grids)),
            nn_bytes=nn_bytes,
            latent_bytes=latent_bytes,
            payload_crc=payload_crc,
            name=name,
            fps_text=fps_text,
        )
    except _FieldError as error:
        kind = LimitExceeded if error.is_limit else BitstreamError
        raise kind(f"header field {error}") from None


# --------------------------------------------------------------------------------------------
# Container


def pack_stream(header: StreamHeader, nn_bytes: bytes, latent_bytes: bytes) -> bytes:
    """The complete file: header (with section lengths and payload CRC filled in) + sections.

    Raises:
        ValueError: sections longer than the architecture and image size allow.
    """
    crc = zlib.crc32(latent_bytes, zlib.crc32(nn_bytes))
    full = replace(header, nn_bytes=len(nn_bytes), latent_bytes=len(latent_bytes), payload_crc=crc)
    return write_header(full) + bytes(nn_bytes) + bytes(latent_bytes)


def unpack_stream(data: bytes | bytearray | memoryview) -> tuple[StreamHeader, bytes, bytes]:
    """Split a complete file into its header and the two sections, checking lengths and CRC.

    Returns:
        ``(header, nn_bytes, latent_bytes)``.

    Raises:
        BitstreamError: everything :func:`read_header` raises; bytes after the last section.
        ChecksumMismatch: the payload CRC32 does not match.
    """
    data = bytes(data)
    header, length = read_header(data)
    end = length + header.nn_bytes + header.latent_bytes
    if end != len(data):
        raise BitstreamError(
            f"stream length: expected {end} bytes (header {length} + sections), "
            f"found {len(data)} ({len(data) - end} trailing bytes)"
        )
    nn = data[length : length + header.nn_bytes]
    latent = data[length + header.nn_bytes : end]
    computed = zlib.crc32(latent, zlib.crc32(nn))
    if computed != header.payload_crc:
        raise ChecksumMismatch(
            f"payload CRC32: stored 0x{header.payload_crc:08x}, computed 0x{computed:08x} "
            "(corrupted data)"
        )
    return header, nn, latent
