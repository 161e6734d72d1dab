"""The stream header's bit string as one table: :data:`HEADER_FIELDS`.

Each entry gives a field of ``docs/bitstream.md`` §1, in stream order: how it is coded (``ue``
with an offset and a scale, ``u(n)``, a permanent enum code, a flag), the range it must lie in,
and the rules that tie it to the fields before it (a yuv420 size is even, a residual layer
keeps its channel count …). The writer, the reader and the validator of
:mod:`coolchic.bitstream.header` all walk this table (:mod:`coolchic.bitstream.bitfields`), so a
field's code and its limits are written down once.

Every enum has an explicit, permanent integer code (:data:`FRAME_FORMAT_CODES` …): never
reorder them, only append (a fifth frame format needs a wider field, hence a new format
version).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Literal

from coolchic.bitstream.bitfields import (
    Bits,
    Code,
    Entry,
    Field,
    Flag,
    Preset,
    Record,
    Repeated,
    Rule,
    Ue,
    check_fields,
    check_int,
    field_error,
)
from coolchic.bitstream.constants import (
    ARM_MAX_WEIGHT_EXP,
    MAX_ARM_HIDDEN_LAYERS,
    MAX_ARM_WIDTH,
    MAX_BIT_DEPTH,
    MAX_COARSER_CONTEXTS,
    MAX_EG_ORDER,
    MAX_FPS_CHARS,
    MAX_HEIGHT,
    MAX_HYPER_GRIDS,
    MAX_IFCE_FEATURES,
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
)
from coolchic.bitstream.nn_params import GroupCode

__all__ = [
    "ADDED_FIELDS",
    "ARCHITECTURE_PRESETS",
    "ARCHITECTURE_PRESETS_V6",
    "ARCHITECTURE_PRESETS_V8",
    "FPS_ALPHABET",
    "FRAME_FORMAT_CODES",
    "GROUP_CODING_FIELDS",
    "GROUP_CODING_FIELDS_V6",
    "HEADER_FIELDS",
    "HEADER_FIELDS_V2",
    "HEADER_FIELDS_V3",
    "HEADER_FIELDS_V4",
    "HEADER_FIELDS_V5",
    "HEADER_FIELDS_V6",
    "HEADER_FIELDS_V7",
    "HEADER_FIELDS_V8",
    "LAYER_KIND_CODES",
    "NONLINEARITY_CODES",
    "REMOVED_IN_V7",
    "SYNTHESIS_LAYER_FIELDS",
    "FrameFormat",
    "GroupCoding",
    "LayerKind",
    "Nonlinearity",
    "SynthesisLayerField",
    "header_fields",
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
#: Frame-rate characters, 4 bits each: code i is ``FPS_ALPHABET[i]``, 11..15 unused.
FPS_ALPHABET: Final = "0123456789."

_FPS_CHAR: Final = Code(
    4,
    {char: code for code, char in enumerate(FPS_ALPHABET)},
    f"0..{len(FPS_ALPHABET) - 1} (digits, then '.')",
)
_FPS_PATTERN = re.compile(r"[0-9]+(\.[0-9]+)?")

# --------------------------------------------------------------------------------------------
# The records and their fields


@dataclass(frozen=True)
class SynthesisLayerField:
    """One synthesis layer as written in the header (:data:`SYNTHESIS_LAYER_FIELDS`).

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
        check_fields(self, SYNTHESIS_LAYER_FIELDS)


@dataclass(frozen=True)
class GroupCoding:
    """How one (module, weight|bias) parameter group is coded (:data:`GROUP_CODING_FIELDS`).

    Attributes:
        exp: step exponent, the quantisation step is ``2^-exp``; 0..31.
        order: exp-Golomb order, or Rice parameter with ``rice``, 0..12.
        rice: the group's integers are Golomb-Rice codes (format version 7 on; False before).
    """

    exp: int = 0
    order: int = 0
    rice: bool = False

    def __post_init__(self) -> None:
        check_fields(self, GROUP_CODING_FIELDS)

    @property
    def code(self) -> GroupCode:
        """The code of the group's integers (:mod:`coolchic.bitstream.nn_params`)."""
        return GroupCode(self.order, self.rice)


def _odd(value: int) -> bool:
    return value % 2 == 1


SYNTHESIS_LAYER_FIELDS: Final = (
    Field("out_channels", Ue(offset=1), 1, MAX_SYNTHESIS_CHANNELS, "synthesis out_channels"),
    Field(
        "kernel",
        Ue(offset=1, scale=2),
        1,
        MAX_SYNTHESIS_KERNEL,
        "synthesis kernel",
        rule=Rule(_odd, "an odd size"),
    ),
    Field("kind", Code(1, LAYER_KIND_CODES), label="synthesis kind"),
    Field("nonlinearity", Code(1, NONLINEARITY_CODES), label="synthesis nonlinearity"),
)

# The step exponent and the exp-Golomb order are fixed-width: every group carries one and they
# are spread over 3..12, so 9 bits a group beat the ~11 that two ue codes would take.
GROUP_CODING_FIELDS: Final = (
    Field(
        "exp",
        Bits(MAX_STEP_EXPONENT.bit_length()),
        0,
        MAX_STEP_EXPONENT,
        "step exponent",
        wire="step_exp",
    ),
    Field(
        "order", Bits(MAX_EG_ORDER.bit_length()), 0, MAX_EG_ORDER, "exp-Golomb order", "eg_order"
    ),
    # from version 7 on
    Field("rice", Flag()),
)
#: Versions 2 to 6: exp-Golomb codes only.
GROUP_CODING_FIELDS_V6: Final = GROUP_CODING_FIELDS[:2]


# --------------------------------------------------------------------------------------------
# Rules across fields (each runs once the field it is attached to is valid)


def _even_yuv420_size(header: Any) -> None:
    if header.frame_format == "yuv420" and (header.width % 2 or header.height % 2):
        raise field_error(
            "yuv420 size", "even width and height", (header.width, header.height), is_limit=False
        )


def _synthesis_channels(header: Any) -> None:
    """Residual layers keep their channel count (layer 0 reads the grids); the last makes 3."""
    channels = header.n_grids
    for index, layer in enumerate(header.synthesis):
        if layer.kind == "residual" and layer.out_channels != channels:
            raise field_error(
                f"synthesis layer {index} (residual) out_channels",
                f"its input channel count {channels}",
                layer.out_channels,
                is_limit=False,
            )
        channels = layer.out_channels
    if channels != OUT_CHANNELS:
        raise field_error(
            "last synthesis layer out_channels", str(OUT_CHANNELS), channels, is_limit=False
        )


def _arm_weight_exp(header: Any) -> None:
    """The integer ARM shifts weights left by ``16 − exp`` bits: no larger exponent."""
    arm_weight = header.nn_coding[NN_GROUPS.index(("arm", "weight"))]
    check_int(arm_weight.exp, 0, ARM_MAX_WEIGHT_EXP, "arm weight step exponent")


def _canonical_zero_flags(name: str, count: str) -> Any:
    """No grid all zero is stored as ``()``, so that headers compare equal whatever the spelling."""

    def relation(header: Any) -> None:
        flags = getattr(header, name)
        if not isinstance(flags, tuple):
            raise field_error(
                name, f"() or {getattr(header, count)} booleans", flags, is_limit=False
            )
        if not any(flags):
            object.__setattr__(header, name, ())

    return relation


def _ifce_without_coarser_contexts(header: Any) -> None:
    """The inter-feature context takes the slot of the coarser contexts: one or the other."""
    if header.ifce_features and header.coarser_contexts:
        raise field_error(
            "ifce_features", "0 with coarser_contexts", header.ifce_features, is_limit=False
        )


def _hyper_grids_read_by_the_ifce(header: Any) -> None:
    """Hyper-latents sit at the coarsest latent resolutions and only the IFCE reads them."""
    check_int(header.hyper_grids, 0, header.n_grids - 1, "hyper_grids")
    if header.hyper_grids and not header.ifce_features:
        raise field_error(
            "hyper_grids", "0 without ifce_features", header.hyper_grids, is_limit=False
        )


# --------------------------------------------------------------------------------------------
# The table (docs/bitstream.md §1, "Fields")

#: What the frame is, first in the bit string.
_FRAME_FIELDS: Final[tuple[Field, ...]] = (
    Field("width", Ue(offset=1), 1, MAX_WIDTH),
    Field("height", Ue(offset=1), 1, MAX_HEIGHT),
    Field("frame_format", Code(2, FRAME_FORMAT_CODES), relations=(_even_yuv420_size,)),
    Field("bit_depth", Ue(offset=MIN_BIT_DEPTH), MIN_BIT_DEPTH, MAX_BIT_DEPTH, is_limit=False),
)

#: The decoder's architecture, after the frame; from version 6 on one :class:`Preset`.
_ARCHITECTURE_FIELDS: Final[tuple[Field | Repeated, ...]] = (
    Field("n_grids", Ue(offset=1), 1, MAX_N_GRIDS, sizes_loop=True),
    Field("n_ctx_rowcol", Ue(offset=1), 1, MAX_N_CTX_ROWCOL),
    # from version 3 on (HEADER_FIELDS_V2 leaves it out)
    Field("coarser_contexts", Ue(), 0, MAX_COARSER_CONTEXTS),
    # from version 5 on (the earlier tables leave them out)
    Field(
        "ifce_features",
        Ue(),
        0,
        MAX_IFCE_FEATURES,
        relations=(_ifce_without_coarser_contexts,),
    ),
    Field(
        "hyper_grids",
        Ue(),
        0,
        MAX_HYPER_GRIDS,
        sizes_loop=True,
        relations=(_hyper_grids_read_by_the_ifce,),
    ),
    Field(
        "upsampling_kernel",
        Ue(offset=MIN_UPSAMPLING_KERNEL, scale=2),
        MIN_UPSAMPLING_KERNEL,
        MAX_UPSAMPLING_KERNEL,
        rule=Rule(lambda kernel: kernel % 2 == 0, "an even size"),
    ),
    # 0 stays 0 (no pre-concatenation); p > 0 is the size 2p − 1.
    Field(
        "preconcat_kernel",
        Ue(offset=-1, scale=2, keep_zero=True),
        0,
        MAX_PRECONCAT_KERNEL,
        rule=Rule(lambda kernel: kernel == 0 or _odd(kernel), "0 or an odd size"),
    ),
    Repeated(
        "arm_hidden",
        Field("arm_hidden", Ue(offset=1), 1, MAX_ARM_WIDTH, "ARM hidden width"),
        Field(
            "n_arm_hidden",
            Ue(),
            0,
            MAX_ARM_HIDDEN_LAYERS,
            "number of ARM hidden layers",
            sizes_loop=True,
        ),
    ),
    # from version 4 on (the earlier tables leave it out)
    Field("arm_stabiliser", Flag()),
    Repeated(
        "synthesis",
        Record(SynthesisLayerField, SYNTHESIS_LAYER_FIELDS),
        Field(
            "n_synthesis_layers",
            Ue(offset=1),
            1,
            MAX_SYNTHESIS_LAYERS,
            "number of synthesis layers",
            sizes_loop=True,
        ),
        relations=(_synthesis_channels,),
    ),
    # from version 4 on (the earlier tables leave it out)
    Field("synthesis_stabiliser", Flag()),
)


def _nn_coding(fields: tuple[Field, ...]) -> Repeated:
    return Repeated(
        "nn_coding",
        Record(GroupCoding, fields),
        tuple(f"{module}.{kind}" for module, kind in NN_GROUPS),
        relations=(_arm_weight_exp,),
    )


#: How the sections are coded, how long they are, and the frame rate: the end of the bit string
#: (version 7: Rice codes allowed, and no latent section length: the section is the rest of the
#: file).
_CODING_FIELDS: Final[tuple[Field | Repeated, ...]] = (
    _nn_coding(GROUP_CODING_FIELDS),
    Repeated(
        "zero_grids",
        Field("zero_grids", Flag()),
        "n_grids",
        source="zero_grid_flags",
        relations=(_canonical_zero_flags("zero_grids", "n_grids"),),
    ),
    # from version 5 on
    Repeated(
        "zero_hyper_grids",
        Field("zero_hyper_grids", Flag()),
        "hyper_grids",
        source="zero_hyper_grid_flags",
        relations=(_canonical_zero_flags("zero_hyper_grids", "hyper_grids"),),
    ),
    Field("nn_bytes", Ue(), 0, MAX_SECTION_BYTES, bound=lambda header: header.max_nn_bytes),
    # up to version 6
    Field(
        "latent_bytes",
        Ue(scale=4),
        0,
        MAX_SECTION_BYTES,
        wire="latent_words",
        rule=Rule(lambda size: size % 4 == 0, "a multiple of 4"),
        bound=lambda header: header.max_latent_bytes,
    ),
    Repeated(
        "fps_text",
        Field("fps", _FPS_CHAR, label="fps_text"),
        Field("fps length", Ue(), 0, MAX_FPS_CHARS, "fps_text length", sizes_loop=True),
        text=True,
        rule=Rule(
            lambda text: not text or _FPS_PATTERN.fullmatch(text) is not None,
            "digits with an optional decimal part",
        ),
    ),
)


def _small_decoder(
    n_ctx_rowcol: int,
    ifce_features: int,
    hyper_grids: int,
    synthesis_width: int = 8,
    arm_width: int = 8,
) -> Mapping[str, Any]:
    """The encoder's small decoder (``codec.SMALL_DECODER``) as header values, read-only."""
    return MappingProxyType(
        {
            "n_grids": 7,
            "n_ctx_rowcol": n_ctx_rowcol,
            "coarser_contexts": 0,
            "ifce_features": ifce_features,
            "hyper_grids": hyper_grids,
            "upsampling_kernel": 8,
            "preconcat_kernel": 7,
            "arm_hidden": (arm_width,),
            "arm_stabiliser": False,
            "synthesis": (
                SynthesisLayerField(synthesis_width, 1, "linear", "relu"),
                SynthesisLayerField(3, 1, "linear", "none"),
            ),
            "synthesis_stabiliser": False,
        }
    )


#: The architectures that versions 6 and 7 code in one ``ue``: code k is
#: ``ARCHITECTURE_PRESETS_V6[k − 1]``, code 0 is followed by the fields. Permanent.
ARCHITECTURE_PRESETS_V6: Final[tuple[Mapping[str, Any], ...]] = (
    _small_decoder(n_ctx_rowcol=2, ifce_features=0, hyper_grids=0),
    _small_decoder(n_ctx_rowcol=3, ifce_features=0, hyper_grids=0),
    _small_decoder(n_ctx_rowcol=2, ifce_features=2, hyper_grids=3),
    _small_decoder(n_ctx_rowcol=3, ifce_features=2, hyper_grids=3),
)
#: Version 8's presets: version 6's, then the small decoder with a 16-wide synthesis (``fast``
#: on mid-size frames). Permanent.
ARCHITECTURE_PRESETS_V8: Final[tuple[Mapping[str, Any], ...]] = (
    *ARCHITECTURE_PRESETS_V6,
    _small_decoder(n_ctx_rowcol=2, ifce_features=2, hyper_grids=3, synthesis_width=16),
    _small_decoder(n_ctx_rowcol=3, ifce_features=2, hyper_grids=3, synthesis_width=16),
)
#: Version 9's presets: version 8's, then preset 6 with a 16-wide ARM (``fast`` at high rates
#: on mid-size frames). These are the encoder's defaults (a test holds it), whose fields take
#: about 50 bits. Permanent: a new default appends to them in a new version.
ARCHITECTURE_PRESETS: Final[tuple[Mapping[str, Any], ...]] = (
    *ARCHITECTURE_PRESETS_V8,
    _small_decoder(
        n_ctx_rowcol=3, ifce_features=2, hyper_grids=3, synthesis_width=16, arm_width=16
    ),
)

#: Versions 2 to 6: exp-Golomb codes only, and the latent section's length written out.
_CODING_FIELDS_V6: Final[tuple[Field | Repeated, ...]] = (
    _nn_coding(GROUP_CODING_FIELDS_V6),
    *_CODING_FIELDS[1:],
)
#: The fields that version 7 no longer writes, and how a reader fills them in.
REMOVED_IN_V7: Final = ("latent_bytes",)

#: The header's bit string, in stream order (version 9).
HEADER_FIELDS: Final[tuple[Entry, ...]] = (
    *_FRAME_FIELDS,
    Preset("architecture", _ARCHITECTURE_FIELDS, ARCHITECTURE_PRESETS),
    *(entry for entry in _CODING_FIELDS if entry.name not in REMOVED_IN_V7),
)


def _with_presets(presets: tuple[Mapping[str, Any], ...]) -> tuple[Entry, ...]:
    """Version 9's header with fewer architecture presets (versions 7 and 8)."""
    return tuple(
        Preset("architecture", _ARCHITECTURE_FIELDS, presets)
        if isinstance(entry, Preset)
        else entry
        for entry in HEADER_FIELDS
    )


#: The version-8 header: version 9's with fewer architecture presets.
HEADER_FIELDS_V8: Final[tuple[Entry, ...]] = _with_presets(ARCHITECTURE_PRESETS_V8)
#: The version-7 header: fewer presets still.
HEADER_FIELDS_V7: Final[tuple[Entry, ...]] = _with_presets(ARCHITECTURE_PRESETS_V6)
#: The version-6 header: exp-Golomb codes only, and the latent section's length.
HEADER_FIELDS_V6: Final[tuple[Entry, ...]] = (
    *_FRAME_FIELDS,
    Preset("architecture", _ARCHITECTURE_FIELDS, ARCHITECTURE_PRESETS_V6),
    *_CODING_FIELDS_V6,
)
#: The version-5 header: the architecture's fields always written out.
HEADER_FIELDS_V5: Final[tuple[Entry, ...]] = (
    *_FRAME_FIELDS,
    *_ARCHITECTURE_FIELDS,
    *_CODING_FIELDS_V6,
)
#: The version-4 header: no inter-feature context, no hyper-latents.
HEADER_FIELDS_V4: Final[tuple[Entry, ...]] = tuple(
    entry
    for entry in HEADER_FIELDS_V5
    if entry.name not in ("ifce_features", "hyper_grids", "zero_hyper_grids")
)
#: The version-3 header: the same table without the stabiliser flags (always off there).
HEADER_FIELDS_V3: Final[tuple[Entry, ...]] = tuple(
    entry
    for entry in HEADER_FIELDS_V4
    if entry.name not in ("arm_stabiliser", "synthesis_stabiliser")
)
#: The version-2 header: neither the coarser-context field (always 0 there) nor the flag.
HEADER_FIELDS_V2: Final[tuple[Entry, ...]] = tuple(
    entry for entry in HEADER_FIELDS_V3 if entry.name != "coarser_contexts"
)

#: The fields each version added, and their value in the versions before it.
ADDED_FIELDS: Final[dict[int, dict[str, Any]]] = {
    3: {"coarser_contexts": 0},
    4: {"arm_stabiliser": False, "synthesis_stabiliser": False},
    5: {"ifce_features": 0, "hyper_grids": 0, "zero_hyper_grids": ()},
}


def header_fields(version: int) -> tuple[Entry, ...]:
    """The field table of a format version this decoder reads."""
    return {
        2: HEADER_FIELDS_V2,
        3: HEADER_FIELDS_V3,
        4: HEADER_FIELDS_V4,
        5: HEADER_FIELDS_V5,
        6: HEADER_FIELDS_V6,
        7: HEADER_FIELDS_V7,
        8: HEADER_FIELDS_V8,
    }.get(version, HEADER_FIELDS)
