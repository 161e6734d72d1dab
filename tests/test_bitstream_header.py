"""Header and container: round trips, every refused field, corrupt and hostile input."""

from __future__ import annotations

import contextlib
import dataclasses
import struct
import time
import tracemalloc
import zlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coolchic.bitstream.constants import (
    FORMAT_VERSION,
    MAGIC,
    MAX_ARM_HIDDEN_LAYERS,
    MAX_FPS_BYTES,
    MAX_NAME_BYTES,
    MAX_SYNTHESIS_LAYERS,
    NN_GROUPS,
)
from coolchic.bitstream.header import (
    MAX_HEADER_BYTES,
    MIN_HEADER_BYTES,
    GroupCoding,
    StreamHeader,
    SynthesisLayerField,
    pack_stream,
    read_header,
    unpack_stream,
    write_header,
)
from coolchic.errors import BitstreamError, ChecksumMismatch, LimitExceeded, UnsupportedVersion

V2_SYNTHESIS = (
    SynthesisLayerField(40, 1, "linear", "relu"),
    SynthesisLayerField(3, 1, "linear", "relu"),
    SynthesisLayerField(3, 3, "residual", "relu"),
    SynthesisLayerField(3, 3, "residual", "none"),
)


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
        "name": "B-Market_Place",
        "fps_text": "50",
    }
    fields.update(changes)
    return StreamHeader(**fields)


def restamp(data: bytes) -> bytes:
    """Recompute the header CRC32 after a deliberate edit, so parsing reaches the fields."""
    length = struct.unpack(">H", data[5:7])[0]
    head = data[: length - 4]
    return head + struct.pack(">I", zlib.crc32(head)) + data[length:]


def field_offset(header: StreamHeader, name: str) -> int:
    """Byte offset of a field after the variable-length ARM and synthesis parts."""
    tail = 19 + len(header.arm_hidden) + 4 * len(header.synthesis)
    offsets = {
        "header_bytes": 5,
        "width": 7,
        "height": 9,
        "frame_format": 11,
        "bit_depth": 12,
        "n_grids": 13,
        "n_ctx_rowcol": 14,
        "upsampling_kernel": 15,
        "preconcat_kernel": 16,
        "n_arm_hidden": 17,
        "n_synthesis_layers": 18 + len(header.arm_hidden),
        "nn_coding": tail,
        "zero_grids": tail + 12,
        "nn_bytes": tail + 14,
        "latent_bytes": tail + 18,
        "payload_crc": tail + 22,
        "name_bytes": tail + 26,
    }
    return offsets[name]


def patch(data: bytes, offset: int, raw: bytes) -> bytes:
    return restamp(data[:offset] + raw + data[offset + len(raw) :])


# ---------------------------------------------------------------------------------------------
# Round trips


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
        name=draw(
            st.text(
                st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters='/\\:*?"<>|'),
                max_size=60,
            ).filter(lambda s: s not in {".", ".."} and len(s.encode()) <= 255)
        ),
        fps_text=draw(st.from_regex(r"\A([0-9]{1,6}(\.[0-9]{1,6})?)?\Z")),
        payload_crc=draw(st.integers(0, 2**32 - 1)),
    )
    return dataclasses.replace(
        base,
        nn_bytes=draw(st.integers(0, base.max_nn_bytes)),
        latent_bytes=4 * draw(st.integers(0, base.max_latent_bytes // 4)),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(headers())
def test_any_in_range_header_round_trips(header: StreamHeader) -> None:
    data = write_header(header)
    assert MIN_HEADER_BYTES <= len(data) <= MAX_HEADER_BYTES
    payload = bytes(header.nn_bytes + header.latent_bytes)
    parsed, length = read_header(data + payload)
    assert parsed == header
    assert length == len(data)


def test_header_layout_and_sizes() -> None:
    header = make_header()
    data = write_header(header)
    assert data[:4] == MAGIC and data[4] == FORMAT_VERSION
    assert struct.unpack(">H", data[5:7])[0] == len(data)
    assert struct.unpack(">HH", data[7:11]) == (64, 48)
    assert data[11] == 1  # yuv420
    assert data[field_offset(header, "n_synthesis_layers")] == 4
    name_at = field_offset(header, "name_bytes")
    assert data[name_at] == len("B-Market_Place")
    assert data[name_at + 1 : name_at + 15] == b"B-Market_Place"
    minimal = StreamHeader(
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
    assert len(write_header(minimal)) == MIN_HEADER_BYTES
    widest = dataclasses.replace(
        minimal,
        n_grids=3,
        arm_hidden=(64,) * MAX_ARM_HIDDEN_LAYERS,
        synthesis=(SynthesisLayerField(3, 1, "linear", "none"),) * MAX_SYNTHESIS_LAYERS,
        name="é" * (MAX_NAME_BYTES // 2) + "x",
        fps_text="1" * MAX_FPS_BYTES,
    )
    assert len(write_header(widest)) == MAX_HEADER_BYTES
    assert header.grid_shapes[0] == (48, 64) and header.grid_shapes[6] == (1, 1)
    assert header.nn_exps[("synthesis", "bias")] == 13
    assert header.group_coding("arm", "bias") == GroupCoding(9, 1)


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
    ("payload_crc", {"payload_crc": 2**32}),
    ("name length", {"name": "x" * 256}),
    ("name", {"name": "../etc"}),
    ("name", {"name": "a\nb"}),
    ("name", {"name": ".."}),
    ("fps_text", {"fps_text": "fast"}),
    ("fps_text length", {"fps_text": "1" * 17}),
    ("format_version", {"format_version": 2}),
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


# ---------------------------------------------------------------------------------------------
# Reading refuses what it does not know


def test_wrong_magic_unknown_version_and_checksum() -> None:
    data = write_header(make_header())
    with pytest.raises(BitstreamError, match="not a coolchic bitstream"):
        read_header(b"\x89PNG" + data[4:])
    with pytest.raises(BitstreamError, match="not a coolchic bitstream"):
        read_header(b"")
    with pytest.raises(UnsupportedVersion, match="reads version 1, found 2"):
        read_header(data[:4] + b"\x02" + data[5:])
    with pytest.raises(UnsupportedVersion):
        read_header(MAGIC + b"\x07")
    corrupted = data[:20] + bytes([data[20] ^ 1]) + data[21:]
    with pytest.raises(ChecksumMismatch, match=r"stored 0x[0-9a-f]{8}, computed 0x[0-9a-f]{8}"):
        read_header(corrupted)


@pytest.mark.parametrize(
    ("field", "raw", "error", "message"),
    [
        ("header_bytes", struct.pack(">H", 60000), LimitExceeded, "header_bytes"),
        ("header_bytes", struct.pack(">H", 10), LimitExceeded, "header_bytes"),
        ("width", struct.pack(">H", 20000), LimitExceeded, "width"),
        ("height", struct.pack(">H", 0), LimitExceeded, "height"),
        ("frame_format", b"\x07", BitstreamError, "frame_format"),
        ("bit_depth", b"\x11", BitstreamError, "bit_depth"),
        ("n_grids", b"\x0b", LimitExceeded, "n_grids"),
        ("n_ctx_rowcol", b"\x09", LimitExceeded, "n_ctx_rowcol"),
        ("n_arm_hidden", b"\xc8", LimitExceeded, "n_arm_hidden"),
        ("n_synthesis_layers", b"\xff", LimitExceeded, "n_synthesis_layers"),
        ("zero_grids", b"\xff\xff", BitstreamError, "zero_grids"),
        ("nn_bytes", struct.pack(">I", 2**32 - 1), LimitExceeded, "nn_bytes"),
        ("latent_bytes", struct.pack(">I", 2**31), LimitExceeded, "latent_bytes"),
        ("nn_bytes", struct.pack(">I", 5000), LimitExceeded, "truncated file"),
        ("name_bytes", b"\xff", BitstreamError, "header"),
    ],
)
def test_hostile_fields_are_refused_when_read(
    field: str, raw: bytes, error: type[Exception], message: str
) -> None:
    header = make_header()
    data = patch(write_header(header), field_offset(header, field), raw)
    with pytest.raises(error, match=message):
        read_header(data)


def test_huge_declared_sizes_are_refused_before_allocating() -> None:
    big = make_header(width=16384, height=16384, n_grids=1)
    data = write_header(big)
    offset = field_offset(big, "latent_bytes")
    hostile = patch(data, offset, struct.pack(">I", 4 * 2**27))  # within limits, not in the file
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
    header, nn, latent = unpack_stream(small_stream())
    assert (nn, latent) == (b"\x12\x34\x56", bytes(range(24)))
    assert header.nn_bytes == 3 and header.latent_bytes == 24
    assert header.payload_crc == zlib.crc32(latent, zlib.crc32(nn))
    assert dataclasses.replace(header, nn_bytes=0, latent_bytes=0, payload_crc=0) == make_header()


def test_container_checks_payload_and_length() -> None:
    data = small_stream()
    with pytest.raises(ChecksumMismatch, match="payload CRC32: stored"):
        unpack_stream(data[:-1] + bytes([data[-1] ^ 0x80]))
    with pytest.raises(BitstreamError, match="trailing bytes"):
        unpack_stream(data + b"\x00")
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
    """The CRC is re-stamped after each edit, so the field checks themselves are exercised."""
    stream = bytearray(small_stream())
    length = struct.unpack(">H", stream[5:7])[0]
    for _ in range(data.draw(st.integers(1, 4))):
        stream[data.draw(st.integers(7, length - 5))] = data.draw(st.integers(0, 255))
    _expect_bitstream_error(restamp(bytes(stream)))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120))
def test_arbitrary_bytes_after_the_magic(tail: bytes) -> None:
    _expect_bitstream_error(MAGIC + bytes([FORMAT_VERSION]) + tail)
