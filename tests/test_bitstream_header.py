"""Header and container (format versions 2 to 7): layout, size, round trips, every refused
field, corrupt and hostile input."""

from __future__ import annotations

import contextlib
import dataclasses
import time
import tracemalloc
import zlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coolchic.bitstream.bits import BitWriter
from coolchic.bitstream.constants import (
    FORMAT_VERSION,
    MAGIC,
    MAGIC_V1,
    MAX_ARM_HIDDEN_LAYERS,
    MAX_FPS_CHARS,
    MAX_SYNTHESIS_LAYERS,
    NN_GROUPS,
)
from coolchic.bitstream.expgolomb import write_ue
from coolchic.bitstream.header import (
    FRAME_FORMAT_CODES,
    LAYER_KIND_CODES,
    MAX_HEADER_BYTES,
    MIN_HEADER_BYTES,
    NONLINEARITY_CODES,
    GroupCoding,
    StreamHeader,
    SynthesisLayerField,
    pack_stream,
    read_header,
    unpack_stream,
    write_header,
)
from coolchic.bitstream.header_fields import (
    ARCHITECTURE_PRESETS,
    ARCHITECTURE_PRESETS_V6,
    ARCHITECTURE_PRESETS_V8,
)
from coolchic.errors import BitstreamError, ChecksumMismatch, LimitExceeded, UnsupportedVersion

V2_SYNTHESIS = (
    SynthesisLayerField(40, 1, "linear", "relu"),
    SynthesisLayerField(3, 1, "linear", "relu"),
    SynthesisLayerField(3, 3, "residual", "relu"),
    SynthesisLayerField(3, 3, "residual", "none"),
)
#: The small decoder the codec gives every image (codec.SMALL_DECODER).
SMALL_SYNTHESIS = (
    SynthesisLayerField(8, 1, "linear", "relu"),
    SynthesisLayerField(3, 1, "linear", "none"),
)
#: Typical step exponents and orders of that decoder on kodim15 192x128 (benchmarks/results).
TYPICAL_CODING = tuple(
    GroupCoding(exp, order) for exp, order in ((6, 5), (4, 3), (7, 5), (0, 0), (9, 6), (9, 9))
)
#: What a default 192x128 yuv420 8-bit stream's header measures (69 bytes in version 1).
# 30 in version 2: version 3 adds the 1-bit coarser-context field, version 4 the two stabiliser
# flags (which still fit in the last byte of these headers), version 5 two more bits; version 6
# codes the architecture, one of its presets, in 3 or 5 bits instead of about 50
DEFAULT_HEADER_BYTES = 25


def make_header(**changes: Any) -> StreamHeader:
    fields: dict[str, Any] = {
        "width": 64,
        "height": 48,
        "frame_format": "yuv420",
        "bit_depth": 10,
        "n_grids": 7,
        "n_ctx_rowcol": 3,
        "arm_hidden": (24, 24),
        "upsampling_kernel": 8,
        "preconcat_kernel": 7,
        "synthesis": V2_SYNTHESIS,
        "nn_coding": tuple(GroupCoding(8 + i, i) for i in range(len(NN_GROUPS))),
        "fps_text": "50",
    }
    fields.update(changes)
    return StreamHeader(**fields)


# ---------------------------------------------------------------------------------------------
# An independent writer of the layout (docs/bitstream.md §1, versions 2 to 7), from raw values,
# so that tests can state the layout and write any value, valid or not, under a valid CRC.

UE = 0  # width marker of a ue(v) field
#: The header attributes that version 6 sends as one preset code when it can.
ARCHITECTURE = (
    "n_grids",
    "n_ctx_rowcol",
    "coarser_contexts",
    "ifce_features",
    "hyper_grids",
    "upsampling_kernel",
    "preconcat_kernel",
    "arm_hidden",
    "arm_stabiliser",
    "synthesis",
    "synthesis_stabiliser",
)


def preset_code(h: StreamHeader) -> int:
    """The architecture code of ``h`` (version 6 on): 1 + its preset's index in its version's
    presets, or 0 (the fields follow)."""
    presets = {8: ARCHITECTURE_PRESETS_V8}.get(h.format_version, ARCHITECTURE_PRESETS)
    if h.format_version < 8:
        presets = ARCHITECTURE_PRESETS_V6
    mine = {name: getattr(h, name) for name in ARCHITECTURE}
    return next((k + 1 for k, p in enumerate(presets) if dict(p) == mine), 0)


def raw_fields(h: StreamHeader) -> list[tuple[str, int, int]]:
    """``h``'s bit string as ``(field, width in bits or UE, raw value)``, in order."""
    fields = [
        ("width", UE, h.width - 1),
        ("height", UE, h.height - 1),
        ("frame_format", 2, FRAME_FORMAT_CODES[h.frame_format]),
        ("bit_depth", UE, h.bit_depth - 8),
    ]
    code = preset_code(h) if h.format_version >= 6 else 0
    if h.format_version >= 6:
        fields.append(("architecture", UE, code))
    architecture = [
        ("n_grids", UE, h.n_grids - 1),
        ("n_ctx_rowcol", UE, h.n_ctx_rowcol - 1),
        *([("coarser_contexts", UE, h.coarser_contexts)] if h.format_version >= 3 else []),
        *(
            [("ifce_features", UE, h.ifce_features), ("hyper_grids", UE, h.hyper_grids)]
            if h.format_version >= 5
            else []
        ),
        ("upsampling_kernel", UE, h.upsampling_kernel // 2 - 2),
        ("preconcat_kernel", UE, (h.preconcat_kernel + 1) // 2),
        ("n_arm_hidden", UE, len(h.arm_hidden)),
    ]
    architecture += [(f"arm_hidden[{i}]", UE, w - 1) for i, w in enumerate(h.arm_hidden)]
    if h.format_version >= 4:
        architecture.append(("arm_stabiliser", 1, int(h.arm_stabiliser)))
    architecture.append(("n_synthesis_layers", UE, len(h.synthesis) - 1))
    for i, layer in enumerate(h.synthesis):
        architecture += [
            (f"synthesis[{i}].out_channels", UE, layer.out_channels - 1),
            (f"synthesis[{i}].kernel", UE, (layer.kernel - 1) // 2),
            (f"synthesis[{i}].kind", 1, LAYER_KIND_CODES[layer.kind]),
            (f"synthesis[{i}].nonlinearity", 1, NONLINEARITY_CODES[layer.nonlinearity]),
        ]
    if h.format_version >= 4:
        architecture.append(("synthesis_stabiliser", 1, int(h.synthesis_stabiliser)))
    if not code:
        fields += architecture
    for (module, kind), coding in zip(NN_GROUPS, h.nn_coding, strict=True):
        fields += [
            (f"{module}.{kind}.exp", 5, coding.exp),
            (f"{module}.{kind}.order", 4, coding.order),
        ]
        if h.format_version >= 7:
            fields.append((f"{module}.{kind}.rice", 1, int(coding.rice)))
    fields += [(f"zero_grids[{i}]", 1, int(z)) for i, z in enumerate(h.zero_grid_flags)]
    fields += [(f"zero_hyper_grids[{i}]", 1, int(z)) for i, z in enumerate(h.zero_hyper_grid_flags)]
    fields.append(("nn_bytes", UE, h.nn_bytes))
    if h.format_version < 7:  # version 7 on: the latent section is the rest of the file
        fields.append(("latent_words", UE, h.latent_bytes // 4))
    fields.append(("fps_length", UE, len(h.fps_text)))
    fields += [(f"fps[{i}]", 4, "0123456789.".index(c)) for i, c in enumerate(h.fps_text)]
    return fields


def raw_stream(
    fields: list[tuple[str, int, int]],
    payload: bytes = b"",
    *,
    padding: int = 0,
    crc_fix: bool = True,
    version: int = FORMAT_VERSION,
    **values: int,
) -> bytes:
    """The file these fields (values overridden by name) and payload make, CRC included."""
    unknown = set(values) - {name for name, _, _ in fields}
    assert not unknown, unknown
    writer = BitWriter()
    for name, width, value in fields:
        value = values.get(name, value)
        if width == UE:
            write_ue(writer, value)
        else:
            writer.write_uint(value, width)
    pad = -writer.n_bits % 8
    writer.write_uint(padding & ((1 << pad) - 1), pad)
    head = MAGIC + bytes([version]) + writer.to_bytes()
    crc = zlib.crc32(payload, zlib.crc32(head)) if crc_fix else 0
    return head + crc.to_bytes(4, "big") + payload


def stream_of(header: StreamHeader, **values: int) -> bytes:
    """``header`` as a complete file with a zero payload, fields overridden by name."""
    payload = bytes(header.nn_bytes + header.latent_bytes)
    return raw_stream(raw_fields(header), payload, version=header.format_version, **values)


# ---------------------------------------------------------------------------------------------
# Layout, size, round trips


def test_header_layout_is_the_documented_one() -> None:
    header = make_header(zero_grids=(False,) * 6 + (True,), nn_bytes=5, latent_bytes=8)
    payload = bytes(range(13))
    data = write_header(header, payload)
    assert data[:2] == MAGIC == b"CC" and data[2] == FORMAT_VERSION == 9
    assert data + payload == raw_stream(raw_fields(header), payload)
    assert read_header(data + payload) == (header, len(data))
    assert header.grid_shapes[0] == (48, 64) and header.grid_shapes[6] == (1, 1)
    assert header.group_coding("synthesis", "bias").exp == 13
    assert header.group_coding("arm", "bias") == GroupCoding(9, 1)


@pytest.mark.parametrize("coarser_contexts", [0, 1, 3])
def test_version_3_carries_the_coarser_contexts(coarser_contexts: int) -> None:
    header = make_header(coarser_contexts=coarser_contexts, nn_bytes=5, latent_bytes=8)
    payload = bytes(range(13))
    data = write_header(header, payload)
    assert data + payload == raw_stream(raw_fields(header), payload)
    assert read_header(data + payload) == (header, len(data))
    assert header.n_contexts == 24 + coarser_contexts


@pytest.mark.parametrize("arm", [False, True])
@pytest.mark.parametrize("synthesis", [False, True])
def test_version_4_carries_the_stabilisers(arm: bool, synthesis: bool) -> None:
    header = make_header(
        arm_stabiliser=arm, synthesis_stabiliser=synthesis, nn_bytes=5, latent_bytes=8
    )
    payload = bytes(range(13))
    data = write_header(header, payload)
    assert data + payload == raw_stream(raw_fields(header), payload)
    assert read_header(data + payload) == (header, len(data))
    plain = make_header(nn_bytes=5, latent_bytes=8)
    # The stabilisers' 24 x 2 and 7 x 3 weights raise the bound on the parameter section.
    assert header.max_n_parameters == plain.max_n_parameters + 48 * arm + 21 * synthesis


@pytest.mark.parametrize(("ifce_features", "hyper_grids"), [(0, 0), (2, 0), (2, 3), (8, 4)])
def test_version_5_carries_the_inter_feature_context_and_hyper_latents(
    ifce_features: int, hyper_grids: int
) -> None:
    zero_hyper = tuple(i == 1 for i in range(hyper_grids))
    header = make_header(
        ifce_features=ifce_features,
        hyper_grids=hyper_grids,
        zero_hyper_grids=zero_hyper,
        nn_bytes=5,
        latent_bytes=8,
    )
    payload = bytes(range(13))
    data = write_header(header, payload)
    assert data + payload == raw_stream(raw_fields(header), payload)
    assert read_header(data + payload) == (header, len(data))
    assert header.n_contexts == 24 + ifce_features
    # the hyper grids repeat the coarsest latent sizes, after the latent grids
    assert header.coded_grid_shapes[7:] == header.grid_shapes[7 - hyper_grids :]
    assert header.coded_zero_flags == (False,) * 7 + zero_hyper
    plain = make_header(nn_bytes=5, latent_bytes=8)
    # grid 0 reads 6 coarser latent grids and the hyper ones, grid 1 five, grid 2 four; the
    # ARM's first layer (to 24) reads C_f more inputs
    ifce_parameters = sum(n + hyper_grids + 1 for n in (6, 5, 4)) * ifce_features
    assert header.max_n_parameters == (
        plain.max_n_parameters + ifce_parameters + 24 * ifce_features
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"ifce_features": 9}, "ifce_features"),
        ({"ifce_features": 1, "coarser_contexts": 1}, "ifce_features"),
        ({"hyper_grids": 1}, "hyper_grids"),
        ({"ifce_features": 1, "hyper_grids": 5}, "hyper_grids"),
        ({"ifce_features": 1, "hyper_grids": 2, "n_grids": 2, "synthesis": ()}, "hyper_grids"),
        ({"format_version": 4, "ifce_features": 1}, "ifce_features"),
        ({"ifce_features": 1, "hyper_grids": 1, "zero_hyper_grids": (True, False)}, "zero_hyper"),
    ],
)
def test_bad_version_5_fields_are_refused(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        make_header(**changes)


def small_decoder_header(n_ctx_rowcol: int = 2, **changes: Any) -> StreamHeader:
    """A header of the encoder's small decoder (a version-6 preset) at 192x128."""
    fields: dict[str, Any] = {
        "width": 192,
        "height": 128,
        "bit_depth": 8,
        "n_ctx_rowcol": n_ctx_rowcol,
        "arm_hidden": (8,),
        "synthesis": SMALL_SYNTHESIS,
        "nn_coding": TYPICAL_CODING,
        "fps_text": "01",
    }
    return make_header(**{**fields, **changes})


def raw_bits(fields: list[tuple[str, int, int]]) -> int:
    """The length of :func:`raw_fields`' bit string."""
    writer = BitWriter()
    for _, width, value in fields:
        write_ue(writer, value) if width == UE else writer.write_uint(value, width)
    return writer.n_bits


@pytest.mark.parametrize(
    ("n_ctx_rowcol", "ifce_features", "hyper_grids", "code"),
    [(2, 0, 0, 1), (3, 0, 0, 2), (2, 2, 3, 3), (3, 2, 3, 4)],
)
def test_version_6_codes_a_preset_architecture_in_one_code(
    n_ctx_rowcol: int, ifce_features: int, hyper_grids: int, code: int
) -> None:
    header = small_decoder_header(
        n_ctx_rowcol,
        ifce_features=ifce_features,
        hyper_grids=hyper_grids,
        nn_bytes=5,
        format_version=6,
    )
    assert preset_code(header) == code
    payload = bytes(range(5))
    data = write_header(header, payload)
    assert data + payload == raw_stream(raw_fields(header), payload, version=6)
    assert read_header(data + payload) == (header, len(data))
    # the same header in version 5 writes the architecture out: 50 or 56 bits, not 3 or 5
    old = dataclasses.replace(header, format_version=5)
    assert raw_bits(raw_fields(old)) - raw_bits(raw_fields(header)) == 47 + (4 if code > 2 else 0)
    assert len(data) <= len(write_header(old, payload)) - 5


def test_version_7_adds_the_rice_flags_and_drops_the_latent_length() -> None:
    """Version 7: one Rice flag per group (6 bits); the latent section's length is not
    written (here 17 bits), the section being the rest of the file."""
    coding = tuple(GroupCoding(8, 3, rice=i % 2 == 1) for i in range(len(NN_GROUPS)))
    header = small_decoder_header(nn_coding=coding, nn_bytes=5, latent_bytes=1200)
    payload = bytes(range(5)) + bytes(1200)
    data = write_header(header, payload)
    assert data[2] == 9 and data + payload == raw_stream(raw_fields(header), payload)
    assert read_header(data + payload) == (header, len(data))
    assert unpack_stream(data + payload)[2] == bytes(1200)
    plain = dataclasses.replace(header, nn_coding=(GroupCoding(8, 3),) * len(NN_GROUPS))
    old = dataclasses.replace(plain, format_version=6)
    assert raw_bits(raw_fields(old)) - raw_bits(raw_fields(plain)) == 17 - 6
    with pytest.raises(ValueError, match="rice"):
        dataclasses.replace(header, format_version=6)  # version 6 has no Rice codes


def test_version_6_headers_are_still_read_and_written() -> None:
    old = small_decoder_header(format_version=6, nn_bytes=5, latent_bytes=8)
    payload = bytes(range(13))
    data = write_header(old, payload)
    assert data[2] == 6 and data + payload == raw_stream(raw_fields(old), payload, version=6)
    assert read_header(data + payload) == (old, len(data))


def test_version_6_writes_any_other_architecture_after_code_0() -> None:
    header = small_decoder_header(arm_hidden=(16,), nn_bytes=5)
    payload = bytes(range(5))
    data = write_header(header, payload)
    assert preset_code(header) == 0 and data + payload == raw_stream(raw_fields(header), payload)
    assert read_header(data + payload) == (header, len(data))


@pytest.mark.parametrize(("version", "presets"), [(6, 4), (7, 4), (8, 6), (9, 7)])
def test_each_version_refuses_an_architecture_code_beyond_its_presets(
    version: int, presets: int
) -> None:
    fields = raw_fields(small_decoder_header(format_version=version, latent_bytes=8))
    data = raw_stream(fields, version=version, architecture=presets + 1)
    with pytest.raises(
        BitstreamError, match=rf"header field architecture: expected a code in 0\.\.{presets},"
    ):
        read_header(data)


@pytest.mark.parametrize(("n_ctx_rowcol", "code"), [(2, 5), (3, 6)])
def test_version_8_codes_the_wide_synthesis_presets(n_ctx_rowcol: int, code: int) -> None:
    """Version 8 adds ``fast``'s 16-wide synthesis (with the inter-feature context) as presets
    5 and 6, which version 9 keeps; version 7 writes the same architecture out after code 0."""
    wide = (
        SynthesisLayerField(16, 1, "linear", "relu"),
        SynthesisLayerField(3, 1, "linear", "none"),
    )
    header = small_decoder_header(
        n_ctx_rowcol, ifce_features=2, hyper_grids=3, synthesis=wide, nn_bytes=5
    )
    payload = bytes(range(5))
    data = write_header(header, payload)
    assert data[2] == 9 and preset_code(header) == code
    assert data + payload == raw_stream(raw_fields(header), payload)
    assert read_header(data + payload) == (header, len(data))
    version_8 = dataclasses.replace(header, format_version=8)
    assert preset_code(version_8) == code
    assert read_header(write_header(version_8, payload) + payload)[0] == version_8
    old = dataclasses.replace(header, format_version=7)
    assert preset_code(old) == 0
    assert read_header(write_header(old, payload) + payload)[0] == old
    assert raw_bits(raw_fields(old)) - raw_bits(raw_fields(header)) > 40


def test_version_9_codes_the_wide_arm_preset() -> None:
    """Version 9 adds ``fast``'s 16-wide ARM at high rates on mid-size frames (24 contexts,
    the inter-feature context, the 16-wide synthesis) as preset 7; version 8 writes it out
    after code 0."""
    synthesis = (
        SynthesisLayerField(16, 1, "linear", "relu"),
        SynthesisLayerField(3, 1, "linear", "none"),
    )
    header = small_decoder_header(
        3, ifce_features=2, hyper_grids=3, synthesis=synthesis, arm_hidden=(16,), nn_bytes=5
    )
    payload = bytes(range(5))
    data = write_header(header, payload)
    assert data[2] == 9 and preset_code(header) == 7
    assert data + payload == raw_stream(raw_fields(header), payload)
    assert read_header(data + payload) == (header, len(data))
    old = dataclasses.replace(header, format_version=8)
    assert preset_code(old) == 0
    assert read_header(write_header(old, payload) + payload)[0] == old
    assert raw_bits(raw_fields(old)) - raw_bits(raw_fields(header)) > 40


def test_version_5_headers_are_still_read_and_written() -> None:
    """Version 5 writes every architecture field, presets included."""
    old = small_decoder_header(format_version=5, nn_bytes=5, latent_bytes=8)
    payload = bytes(range(13))
    data = write_header(old, payload)
    assert data[2] == 5 and data + payload == raw_stream(raw_fields(old), payload, version=5)
    assert read_header(data + payload) == (old, len(data))


def test_version_4_headers_are_still_read_and_written() -> None:
    """Version 4 has neither the inter-feature fields nor the hyper flags: they read as 0."""
    old = make_header(format_version=4, arm_stabiliser=True, nn_bytes=5, latent_bytes=8)
    payload = bytes(range(13))
    data = write_header(old, payload)
    assert data[2] == 4 and data + payload == raw_stream(raw_fields(old), payload, version=4)
    assert read_header(data + payload) == (old, len(data))
    assert old.ifce_features == old.hyper_grids == 0 and old.coded_zero_flags == (False,) * 7


def test_version_3_headers_are_still_read_and_written() -> None:
    """Version 3 has no stabiliser flag: it reads as off, and is written back bit for bit."""
    old = make_header(format_version=3, coarser_contexts=2, nn_bytes=5, latent_bytes=8)
    payload = bytes(range(13))
    data = write_header(old, payload)
    assert data[2] == 3 and data + payload == raw_stream(raw_fields(old), payload, version=3)
    assert read_header(data + payload) == (old, len(data))
    assert not old.synthesis_stabiliser and not old.arm_stabiliser
    with pytest.raises(ValueError, match="synthesis_stabiliser"):
        make_header(format_version=3, synthesis_stabiliser=True)
    with pytest.raises(ValueError, match="arm_stabiliser"):
        make_header(format_version=2, arm_stabiliser=True)


def test_version_2_headers_are_still_read_and_written() -> None:
    """Version 2 has no coarser-context field: a version-2 header reads as 0 coarser contexts
    and is written back bit for bit, one field shorter than version 3."""
    old = make_header(format_version=2, nn_bytes=5, latent_bytes=8)
    payload = bytes(range(13))
    data = write_header(old, payload)
    assert data[2] == 2 and data + payload == raw_stream(raw_fields(old), payload, version=2)
    assert read_header(data + payload) == (old, len(data))
    assert old.coarser_contexts == 0
    with pytest.raises(ValueError, match="coarser_contexts"):
        make_header(format_version=2, coarser_contexts=1)


@pytest.mark.parametrize("version", [1, 10, 255])
def test_unreadable_versions_are_refused(version: int) -> None:
    data = raw_stream(raw_fields(make_header()), version=version)
    with pytest.raises(UnsupportedVersion, match="reads versions 2, 3, 4, 5, 6, 7, 8 and 9"):
        read_header(data)


@pytest.mark.parametrize("n_ctx_rowcol", [2, 3])
@pytest.mark.parametrize(("nn_bytes", "latent_bytes"), [(200, 264), (250, 1200), (340, 1800)])
def test_default_small_decoder_header_stays_small(
    n_ctx_rowcol: int, nn_bytes: int, latent_bytes: int
) -> None:
    """The 192x128 benchmark files are 500-2,000 bytes: every header byte is ~0.1 % of one."""
    header = small_decoder_header(n_ctx_rowcol)
    stream = pack_stream(header, bytes(nn_bytes), bytes(latent_bytes))
    assert read_header(stream)[1] <= DEFAULT_HEADER_BYTES


def test_smallest_and_largest_headers() -> None:
    explicit = StreamHeader(
        width=1,
        height=1,
        frame_format="rgb",
        bit_depth=8,
        n_grids=1,
        n_ctx_rowcol=1,
        arm_hidden=(),
        upsampling_kernel=4,
        preconcat_kernel=0,
        synthesis=(SynthesisLayerField(3, 1, "linear", "none"),),
    )
    # the shortest architecture written out takes more bits than preset 1's code
    assert len(write_header(dataclasses.replace(explicit, format_version=2))) == 17
    minimal = StreamHeader(
        width=1, height=1, frame_format="rgb", bit_depth=8, **ARCHITECTURE_PRESETS[0]
    )
    # version 7's six Rice flags outweigh the 1-bit empty latent length of version 6 here
    assert len(write_header(dataclasses.replace(minimal, format_version=6))) == MIN_HEADER_BYTES
    assert MIN_HEADER_BYTES == 16 and len(write_header(minimal)) == 17
    minimal = explicit
    widest = dataclasses.replace(
        minimal,
        width=16384,
        height=16384,
        frame_format="yuv444",
        bit_depth=16,
        n_grids=10,
        n_ctx_rowcol=4,
        ifce_features=8,  # longer than coarser_contexts = 3, which excludes it
        hyper_grids=4,
        zero_hyper_grids=(True,) * 4,
        arm_stabiliser=True,
        synthesis_stabiliser=True,
        upsampling_kernel=16,
        preconcat_kernel=15,
        arm_hidden=(64,) * MAX_ARM_HIDDEN_LAYERS,
        synthesis=(SynthesisLayerField(128, 15, "linear", "relu"),) * (MAX_SYNTHESIS_LAYERS - 1)
        + (SynthesisLayerField(3, 15, "linear", "relu"),),
        nn_coding=(GroupCoding(16, 12),) + (GroupCoding(31, 12),) * 5,
        zero_grids=(True,) * 10,
        fps_text="1" * MAX_FPS_CHARS,
    )
    # Without sections, and with a 3-channel last layer: the bound adds the longest section
    # lengths (124 bits of ue codes), a 128-channel last layer (12 bits) and the longest
    # coarser_contexts code, which cannot go with ifce_features (4 bits).
    assert MAX_HEADER_BYTES - 18 <= len(write_header(widest)) <= MAX_HEADER_BYTES


@st.composite
def headers(draw: st.DrawFn) -> StreamHeader:
    frame_format = draw(st.sampled_from(["rgb", "yuv420", "yuv444"]))
    even = frame_format == "yuv420"
    width = draw(st.integers(1, 8192)) * (2 if even else 1)
    height = draw(st.integers(1, 8192)) * (2 if even else 1)
    n_grids = draw(st.integers(1, 10))
    channels = n_grids
    layers = []
    for index in range(draw(st.integers(1, MAX_SYNTHESIS_LAYERS))):
        kind = draw(st.sampled_from(["linear", "residual"]))
        out = channels if kind == "residual" else draw(st.integers(1, 128))
        if index == MAX_SYNTHESIS_LAYERS - 1:
            kind, out = "linear", 3
        layers.append(
            SynthesisLayerField(
                out,
                draw(st.sampled_from(range(1, 16, 2))),
                kind,
                draw(st.sampled_from(["relu", "none"])),
            )
        )
        channels = out
    if channels != 3:
        layers.append(SynthesisLayerField(3, 1, "linear", "none"))
    coding = [
        GroupCoding(
            draw(st.integers(0, 16 if group == ("arm", "weight") else 31)), draw(st.integers(0, 12))
        )
        for group in NN_GROUPS
    ]
    base = StreamHeader(
        width=width,
        height=height,
        frame_format=frame_format,
        bit_depth=draw(st.integers(8, 16)),
        n_grids=n_grids,
        n_ctx_rowcol=draw(st.integers(1, 4)),
        arm_hidden=tuple(draw(st.lists(st.integers(1, 64), max_size=MAX_ARM_HIDDEN_LAYERS))),
        upsampling_kernel=draw(st.sampled_from(range(4, 17, 2))),
        preconcat_kernel=draw(st.sampled_from([0, *range(1, 16, 2)])),
        synthesis=tuple(layers),
        nn_coding=tuple(coding),
        zero_grids=tuple(draw(st.lists(st.booleans(), min_size=n_grids, max_size=n_grids))),
        fps_text=draw(st.from_regex(r"\A([0-9]{1,6}(\.[0-9]{1,6})?)?\Z")),
    )
    ifce = draw(st.integers(0, 8))
    hyper = draw(st.integers(0, min(4, n_grids - 1))) if ifce else 0
    base = dataclasses.replace(
        base,
        ifce_features=ifce,
        hyper_grids=hyper,
        zero_hyper_grids=tuple(draw(st.lists(st.booleans(), min_size=hyper, max_size=hyper))),
    )
    return dataclasses.replace(
        base,
        nn_bytes=draw(st.integers(0, min(base.max_nn_bytes, 1 << 16))),
        latent_bytes=4 * draw(st.integers(0, min(base.max_latent_bytes, 1 << 16) // 4)),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(headers())
def test_any_in_range_header_round_trips(header: StreamHeader) -> None:
    payload = bytes(header.nn_bytes + header.latent_bytes)
    data = write_header(header, payload)
    assert MIN_HEADER_BYTES <= len(data) <= MAX_HEADER_BYTES
    assert data + payload == raw_stream(raw_fields(header), payload)
    assert read_header(data + payload) == (header, len(data))


# ---------------------------------------------------------------------------------------------
# Every field refused at write time


BAD_FIELDS: list[tuple[str, dict[str, Any]]] = [
    ("width", {"width": 0}),
    ("width", {"width": 16386}),
    ("yuv420 size", {"width": 63}),
    ("yuv420 size", {"height": 47}),
    ("frame_format", {"frame_format": "yuv422"}),
    ("bit_depth", {"bit_depth": 7}),
    ("bit_depth", {"bit_depth": 17}),
    ("n_grids", {"n_grids": 0}),
    ("n_grids", {"n_grids": 11}),
    ("n_ctx_rowcol", {"n_ctx_rowcol": 0}),
    ("n_ctx_rowcol", {"n_ctx_rowcol": 5}),
    ("ARM hidden layers", {"arm_hidden": (8,) * 9}),
    ("ARM hidden width", {"arm_hidden": (0,)}),
    ("ARM hidden width", {"arm_hidden": (65,)}),
    ("arm_hidden", {"arm_hidden": [24, 24]}),
    ("upsampling_kernel", {"upsampling_kernel": 2}),
    ("upsampling_kernel", {"upsampling_kernel": 9}),
    ("upsampling_kernel", {"upsampling_kernel": 18}),
    ("preconcat_kernel", {"preconcat_kernel": 4}),
    ("preconcat_kernel", {"preconcat_kernel": 17}),
    ("synthesis layers", {"synthesis": ()}),
    ("synthesis layers", {"synthesis": (SynthesisLayerField(3, 1, "linear", "none"),) * 17}),
    ("residual", {"synthesis": (SynthesisLayerField(3, 3, "residual", "none"),)}),
    ("last synthesis", {"synthesis": (SynthesisLayerField(4, 1, "linear", "none"),)}),
    ("nn_coding", {"nn_coding": (GroupCoding(),) * 5}),
    ("arm weight step exponent", {"nn_coding": (GroupCoding(17, 0),) + (GroupCoding(),) * 5}),
    ("zero_grids", {"zero_grids": (False,) * 6}),
    ("nn_bytes", {"nn_bytes": -1}),
    ("nn_bytes", {"nn_bytes": 10**9}),
    ("latent_bytes", {"latent_bytes": 6}),
    ("latent_bytes", {"latent_bytes": 10**9}),
    ("latent_bytes", {"latent_bytes": 4, "zero_grids": (True,) * 7}),
    ("fps_text", {"fps_text": "fast"}),
    ("fps_text", {"fps_text": "."}),
    ("fps_text", {"fps_text": "٣"}),  # a digit, but not an ASCII one
    ("fps_text length", {"fps_text": "1" * 17}),
    ("format_version", {"format_version": 1}),
]


@pytest.mark.parametrize(("field", "changes"), BAD_FIELDS, ids=[f for f, _ in BAD_FIELDS])
def test_every_out_of_range_field_is_refused(field: str, changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=field):
        make_header(**changes)


@pytest.mark.parametrize(
    ("field", "args"),
    [
        ("out_channels", (0, 1, "linear", "relu")),
        ("out_channels", (129, 1, "linear", "relu")),
        ("kernel", (3, 2, "linear", "relu")),
        ("kernel", (3, 17, "linear", "relu")),
        ("kind", (3, 1, "attention", "relu")),
        ("nonlinearity", (3, 1, "linear", "leakyrelu")),
    ],
)
def test_synthesis_layer_fields_are_checked(field: str, args: tuple[Any, ...]) -> None:
    with pytest.raises(ValueError, match=field):
        SynthesisLayerField(*args)


@pytest.mark.parametrize(("exp", "order"), [(-1, 0), (32, 0), (0, 13), (0, -1), (True, 0)])
def test_group_coding_is_checked(exp: Any, order: Any) -> None:
    with pytest.raises(ValueError):
        GroupCoding(exp, order)


def test_payload_must_match_the_declared_sections() -> None:
    with pytest.raises(ValueError, match=r"payload: expected 3 \+ 0 bytes"):
        write_header(make_header(nn_bytes=3), b"\x00")


# ---------------------------------------------------------------------------------------------
# Reading refuses what it does not know


def test_wrong_magic_unknown_version_and_checksum() -> None:
    data = write_header(make_header())
    with pytest.raises(BitstreamError, match="not a coolchic bitstream"):
        read_header(b"\x89PNG" + data[4:])
    with pytest.raises(BitstreamError, match="not a coolchic bitstream"):
        read_header(b"")
    with pytest.raises(BitstreamError, match="format_version: missing"):
        read_header(MAGIC)
    with pytest.raises(
        UnsupportedVersion, match="reads versions 2, 3, 4, 5, 6, 7, 8 and 9, found 10"
    ):
        read_header(data[:2] + b"\x0a" + data[3:])
    with pytest.raises(UnsupportedVersion):
        read_header(MAGIC + b"\x0a")
    corrupted = data[:5] + bytes([data[5] ^ 1]) + data[6:]
    with pytest.raises(BitstreamError):
        read_header(corrupted)
    with pytest.raises(ChecksumMismatch, match=r"stored 0x[0-9a-f]{8}, computed 0x[0-9a-f]{8}"):
        read_header(data[:-1] + bytes([data[-1] ^ 1]))


def test_version_1_files_are_told_to_re_encode() -> None:
    """The first 12 bytes of a real version-1 file (64x48 yuv420 10-bit)."""
    v1 = MAGIC_V1 + bytes.fromhex("01 0045 0040 0030 01 0a")
    assert v1.startswith(b"CCHC")
    for data in (v1, v1[:4]):
        with pytest.raises(UnsupportedVersion, match=r"format version 1 .*re-encode"):
            unpack_stream(data)


@pytest.mark.parametrize(
    ("values", "error", "message"),
    [
        ({"width": 20000}, LimitExceeded, "width"),
        ({"height": 16384}, LimitExceeded, "height"),
        ({"frame_format": 3}, BitstreamError, "frame_format"),
        ({"bit_depth": 9}, BitstreamError, "bit_depth"),
        ({"n_grids": 10}, LimitExceeded, "n_grids: expected at most 10, found 11"),
        ({"n_ctx_rowcol": 4}, LimitExceeded, "n_ctx_rowcol"),
        ({"upsampling_kernel": 7}, LimitExceeded, "upsampling_kernel"),
        ({"preconcat_kernel": 9}, LimitExceeded, "preconcat_kernel"),
        ({"n_arm_hidden": 200}, LimitExceeded, "n_arm_hidden: expected at most 8"),
        ({"arm_hidden[1]": 64}, LimitExceeded, "ARM hidden width"),
        ({"n_synthesis_layers": 2**32}, LimitExceeded, "n_synthesis_layers"),
        ({"synthesis[0].out_channels": 128}, LimitExceeded, "out_channels"),
        ({"synthesis[1].kernel": 8}, LimitExceeded, "kernel"),
        ({"synthesis[1].out_channels": 3}, BitstreamError, "residual"),
        ({"synthesis[3].kind": 0, "synthesis[3].out_channels": 4}, BitstreamError, "last synth"),
        ({"arm.weight.exp": 17}, LimitExceeded, "arm weight step exponent"),
        ({"synthesis.bias.order": 13}, LimitExceeded, "exp-Golomb order"),
        ({"nn_bytes": 5000}, LimitExceeded, "truncated file"),
        ({"fps_length": 17}, LimitExceeded, "fps length: expected at most 16"),
        ({"fps[0]": 11}, BitstreamError, r"fps\[0\]"),
        ({"fps[1]": 10}, BitstreamError, "fps_text"),  # "5." is not a frame rate
    ],
)
def test_hostile_fields_are_refused_when_read(
    values: dict[str, int], error: type[Exception], message: str
) -> None:
    """Each stream has a valid CRC, so the field checks themselves answer."""
    with pytest.raises(error, match=message):
        unpack_stream(stream_of(make_header(), **values))


def test_a_declared_latent_section_beyond_the_file_is_refused() -> None:
    """Versions 2 to 6 write the latent section's length; version 7 has none to lie about."""
    with pytest.raises(LimitExceeded, match="truncated file"):
        unpack_stream(stream_of(make_header(format_version=6), latent_words=2**31))


def test_sections_beyond_the_architecture_bound_are_refused() -> None:
    header = make_header()
    limit = header.max_nn_bytes
    fields = raw_fields(header)
    with pytest.raises(LimitExceeded, match=f"nn_bytes: expected an integer in 0..{limit}"):
        unpack_stream(raw_stream(fields, bytes(limit + 1), nn_bytes=limit + 1))
    all_zero = dataclasses.replace(header, zero_grids=(True,) * 7)
    old = dataclasses.replace(all_zero, format_version=6)
    with pytest.raises(LimitExceeded, match=r"latent_bytes: expected an integer in 0\.\.0"):
        unpack_stream(raw_stream(raw_fields(old), bytes(4), version=6, latent_words=1))
    # version 7: the latent section is what follows the parameters, checked the same way
    with pytest.raises(LimitExceeded, match=r"latent_bytes: expected 0\.\.0, found 4"):
        unpack_stream(raw_stream(raw_fields(all_zero), bytes(4)))
    with pytest.raises(BitstreamError, match="latent_bytes: expected a multiple of 4"):
        unpack_stream(raw_stream(raw_fields(header), bytes(6)))


def test_long_codes_padding_and_truncated_crc_are_refused() -> None:
    start = time.perf_counter()
    with pytest.raises(BitstreamError, match="width: exp-Golomb code with more than 32"):
        read_header(MAGIC + bytes([FORMAT_VERSION]) + bytes(1 << 20))
    assert time.perf_counter() - start < 0.1
    header = make_header(fps_text="5")  # 4 bits short of a whole byte
    fields = raw_fields(header)
    assert raw_stream(fields, padding=1) != raw_stream(fields), "the header needs padding bits"
    with pytest.raises(BitstreamError, match="padding: expected zero bits"):
        read_header(raw_stream(fields, padding=1))
    data = write_header(header)
    with pytest.raises(BitstreamError, match=r"crc32: expected 4 bytes .* \(truncated file\)"):
        read_header(data[:-2])


def test_huge_declared_sizes_are_refused_before_allocating() -> None:
    big = make_header(width=16384, height=16384, n_grids=1, format_version=6)
    hostile = stream_of(big, latent_words=2**27)  # within the limits, not in the file
    tracemalloc.start()
    try:
        with pytest.raises(LimitExceeded, match="truncated file"):
            unpack_stream(hostile)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


# ---------------------------------------------------------------------------------------------
# Container


def small_stream() -> bytes:
    return pack_stream(make_header(), b"\x12\x34\x56", bytes(range(24)))


def test_container_round_trip() -> None:
    data = small_stream()
    header, nn, latent = unpack_stream(data)
    assert (nn, latent) == (b"\x12\x34\x56", bytes(range(24)))
    assert header.nn_bytes == 3 and header.latent_bytes == 24
    assert dataclasses.replace(header, nn_bytes=0, latent_bytes=0) == make_header()
    length = len(data) - 27
    assert data[length - 4 : length] == zlib.crc32(data[: length - 4] + nn + latent).to_bytes(
        4, "big"
    )


def test_one_crc_covers_header_and_both_sections() -> None:
    data = small_stream()
    for index in (len(data) - 27, len(data) - 1):  # first nn byte, last latent byte
        with pytest.raises(ChecksumMismatch, match="CRC-32 of header and sections: stored"):
            unpack_stream(data[:index] + bytes([data[index] ^ 0x80]) + data[index + 1 :])
    with pytest.raises(ChecksumMismatch):
        unpack_stream(raw_stream(raw_fields(make_header()), crc_fix=False))
    # version 7: bytes after the end belong to the latent section, which the CRC covers
    with pytest.raises(ChecksumMismatch):
        unpack_stream(data + b"\x00" * 4)
    old = pack_stream(make_header(format_version=6), b"\x12\x34\x56", bytes(range(24)))
    with pytest.raises(BitstreamError, match="trailing bytes"):
        unpack_stream(old + b"\x00")
    with pytest.raises(ValueError, match="latent_bytes"):
        pack_stream(make_header(), b"", b"\x00")  # not a whole number of words


def _expect_bitstream_error(data: bytes) -> None:
    start = time.perf_counter()
    with contextlib.suppress(BitstreamError):
        unpack_stream(data)
    assert time.perf_counter() - start < 1.0


def test_truncation_at_every_offset_raises_bitstream_error() -> None:
    data = small_stream()
    for end in range(len(data)):
        with pytest.raises(BitstreamError):
            unpack_stream(data[:end])


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_single_byte_change_is_detected(data: st.DataObject) -> None:
    stream = small_stream()
    index = data.draw(st.integers(0, len(stream) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda v: v != stream[index]))
    with pytest.raises(BitstreamError):
        unpack_stream(stream[:index] + bytes([value]) + stream[index + 1 :])


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_random_flips_never_escape_the_error_tree(data: st.DataObject) -> None:
    stream = bytearray(small_stream())
    for _ in range(data.draw(st.integers(1, 8))):
        stream[data.draw(st.integers(0, len(stream) - 1))] ^= data.draw(st.integers(1, 255))
    _expect_bitstream_error(bytes(stream))


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_fuzzed_header_fields_with_valid_crc_never_escape_the_error_tree(
    data: st.DataObject,
) -> None:
    """Any value in any field, under a valid CRC: parsed, or refused with a BitstreamError."""
    header = make_header(nn_bytes=3, latent_bytes=24)
    fields = raw_fields(header)
    values: dict[str, int] = {}
    for _ in range(data.draw(st.integers(1, 4))):
        name, width, _ = fields[data.draw(st.integers(0, len(fields) - 1))]
        high = (1 << width) - 1 if width else data.draw(st.sampled_from([4, 64, 2**16, 2**33 - 2]))
        values[name] = data.draw(st.integers(0, high))
    _expect_bitstream_error(raw_stream(fields, bytes(27), **values))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120))
def test_arbitrary_bytes_after_the_magic(tail: bytes) -> None:
    _expect_bitstream_error(MAGIC + bytes([FORMAT_VERSION]) + tail)
