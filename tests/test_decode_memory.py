"""The decoder's memory bound: hostile headers are refused before anything large is allocated,
legitimate streams (up to 3840x2160 with the encoder's architectures) still decode."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import coolchic.decoder.stream
from coolchic.bitstream import constants as limits
from coolchic.bitstream.header import (
    StreamHeader,
    SynthesisLayerField,
    unpack_stream,
    write_header,
)
from coolchic.cli import main
from coolchic.codec import EncoderConfig, decode_stream, encode
from coolchic.decode_memory import (
    DEFAULT_DECODE_MEMORY_LIMIT,
    MEMORY_LIMIT_VARIABLE,
    check_decode_memory,
    decode_memory_limit,
    estimate_decode_bytes,
    largest_header,
    parse_bytes,
)
from coolchic.errors import ChecksumMismatch, CoolchicError, LimitExceeded
from coolchic.io import Frame

SMALL = (SynthesisLayerField(8, 1, "linear", "relu"), SynthesisLayerField(3, 1, "linear", "none"))
V2 = (
    SynthesisLayerField(40, 1, "linear", "relu"),
    SynthesisLayerField(3, 1, "linear", "relu"),
    SynthesisLayerField(3, 3, "residual", "relu"),
    SynthesisLayerField(3, 3, "residual", "none"),
)


def header_of(width: int, height: int, synthesis: tuple[SynthesisLayerField, ...], **changes: Any):
    fields: dict[str, Any] = {
        "width": width,
        "height": height,
        "frame_format": "yuv420",
        "bit_depth": 8,
        "n_grids": 7,
        "n_ctx_rowcol": 3,
        "arm_hidden": (24, 24),
        "upsampling_kernel": 8,
        "preconcat_kernel": 7,
        "synthesis": synthesis,
    }
    fields.update(changes)
    return StreamHeader(**fields)


@pytest.fixture(scope="module")
def stream() -> bytes:
    rng = np.random.default_rng(3)
    planes = tuple(
        rng.integers(0, 256, shape).astype(np.uint8) for shape in ((16, 16), (8, 8), (8, 8))
    )
    frame = Frame.from_integer_planes(planes, fmt="yuv420", bit_depth=8)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 16x16 encode gains nothing from more, and loses on a busy machine
    try:
        return encode(frame, EncoderConfig(recipe="instant")).bitstream
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the decoder gets past the header (to the networks, then the grids)."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the decoder decoded the networks of a stream it should refuse")

    monkeypatch.setattr(coolchic.decoder.stream.QuantizedNetworks, "decode", staticmethod(refuse))


def test_hostile_header_is_refused_before_allocating(no_model: None) -> None:
    data = write_header(largest_header())
    assert len(data) < 100  # a header and nothing else, with a correct CRC
    started = time.monotonic()
    with pytest.raises(LimitExceeded) as caught:
        decode_stream(data)
    assert time.monotonic() - started < 1.0
    message = str(caught.value)
    assert "16384x16384" in message and MEMORY_LIMIT_VARIABLE in message
    assert "\n" not in message
    assert estimate_decode_bytes(largest_header()) > 1 << 40  # a TiB without the bound


def test_hostile_stream_is_one_line_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "hostile.cool"
    path.write_bytes(write_header(largest_header()))
    assert main(["decode", str(path), "-o", str(tmp_path / "x.yuv")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: decoding this 16384x16384 stream") and err.count("\n") == 0
    assert not (tmp_path / "x.yuv").exists()


def test_any_16384_square_stream_is_refused_by_default(no_model: None) -> None:
    smallest = StreamHeader(
        width=limits.MAX_WIDTH,
        height=limits.MAX_HEIGHT,
        frame_format="yuv420",
        bit_depth=8,
        n_grids=1,
        n_ctx_rowcol=1,
        arm_hidden=(),
        upsampling_kernel=4,
        preconcat_kernel=0,
        synthesis=(SynthesisLayerField(3, 1, "linear", "none"),),
        zero_grids=(True,),
    )
    with pytest.raises(LimitExceeded, match="needs about"):
        decode_stream(write_header(smallest))


def test_sections_longer_than_the_file_are_refused_before_allocating(no_model: None) -> None:
    header = dataclasses.replace(header_of(3840, 2160, SMALL), nn_bytes=4000, latent_bytes=4000)
    data = write_header(header, bytes(8000)) + bytes(8000)
    with pytest.raises(LimitExceeded, match="truncated file"):
        decode_stream(data[:-4001])  # ends inside the nn section
    # version 7 reads the latent section as the rest of the file: the CRC catches a short one
    with pytest.raises(ChecksumMismatch):
        decode_stream(data[:-4])
    old = dataclasses.replace(header, format_version=6)
    data = write_header(old, bytes(8000)) + bytes(8000)
    with pytest.raises(LimitExceeded, match="truncated file"):
        decode_stream(data[:-1])


@pytest.mark.parametrize(
    ("width", "height", "synthesis", "at_most_gib"),
    [
        (1920, 1080, SMALL, 0.6),
        (1920, 1080, V2, 1.3),
        (3840, 2160, SMALL, 2.0),
        (3840, 2160, V2, 4.5),
    ],
)
def test_legitimate_sizes_fit_the_default_limit(
    width: int, height: int, synthesis: tuple[SynthesisLayerField, ...], at_most_gib: float
) -> None:
    header = header_of(width, height, synthesis)
    estimate = check_decode_memory(header, DEFAULT_DECODE_MEMORY_LIMIT)
    # The bound is only honest if it covers the upsampled stack, float64 n_grids x H x W.
    assert 8 * header.n_grids * width * height < estimate < at_most_gib * (1 << 30)


def test_legitimate_stream_still_decodes(stream: bytes, tmp_path: Path) -> None:
    header, _, _ = unpack_stream(stream)
    frame = decode_stream(stream).frame
    assert (frame.width, frame.height) == (header.width, header.height) == (16, 16)
    path = tmp_path / "ok.cool"
    path.write_bytes(stream)
    assert main(["decode", str(path), "-o", str(tmp_path / "ok_16x16_01p_yuv420_8b.yuv")]) == 0


def test_the_limit_follows_the_argument_and_the_environment(
    stream: bytes, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(LimitExceeded):
        decode_stream(stream, memory_limit=1 << 20)
    monkeypatch.setenv(MEMORY_LIMIT_VARIABLE, "1M")
    with pytest.raises(LimitExceeded, match="1 MiB"):
        decode_stream(stream)
    decode_stream(stream, memory_limit=False)  # what the encoder's own check decode uses
    monkeypatch.setenv(MEMORY_LIMIT_VARIABLE, "16G")
    assert decode_memory_limit() == 16 << 30
    decode_stream(stream)
    monkeypatch.setenv(MEMORY_LIMIT_VARIABLE, "lots")
    with pytest.raises(CoolchicError, match=MEMORY_LIMIT_VARIABLE):
        decode_stream(stream)
    monkeypatch.delenv(MEMORY_LIMIT_VARIABLE)
    assert decode_memory_limit() == DEFAULT_DECODE_MEMORY_LIMIT


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8589934592", 8 << 30),
        ("8G", 8 << 30),
        ("8GiB", 8 << 30),
        ("512m", 512 << 20),
        ("1.5T", 3 << 39),
    ],
)
def test_parse_bytes(text: str, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["", "G", "-1G", "0", "nan", "inf", "8X", "eight"])
def test_parse_bytes_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="positive size"):
        parse_bytes(text)


_LAYER = st.builds(
    SynthesisLayerField,
    st.sampled_from([1, 3, 8, 40, limits.MAX_SYNTHESIS_CHANNELS]),
    st.sampled_from([1, 3, 5, limits.MAX_SYNTHESIS_KERNEL]),
    st.just("linear"),
    st.sampled_from(["relu", "none"]),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_header_field_mutants_end_in_a_decode_or_a_coolchic_error(
    stream: bytes, data: st.DataObject
) -> None:
    """Legal header changes, written with a correct CRC, so that the payload is decoded
    against them (the full 10,000-stream run is benchmarks/fuzz_decode.py)."""
    header, nn, latents = unpack_stream(stream)
    changes: dict[str, Any] = data.draw(
        st.fixed_dictionaries(
            {},
            optional={
                "width": st.integers(1, limits.MAX_WIDTH),
                "height": st.integers(1, limits.MAX_HEIGHT),
                "frame_format": st.sampled_from(["rgb", "yuv420", "yuv444"]),
                "n_grids": st.integers(1, limits.MAX_N_GRIDS),
                "n_ctx_rowcol": st.integers(1, limits.MAX_N_CTX_ROWCOL),
                "arm_stabiliser": st.booleans(),
                "synthesis_stabiliser": st.booleans(),
                "upsampling_kernel": st.sampled_from([4, 8, limits.MAX_UPSAMPLING_KERNEL]),
                "preconcat_kernel": st.sampled_from([0, 3, limits.MAX_PRECONCAT_KERNEL]),
                "synthesis": st.lists(_LAYER, max_size=3).map(
                    lambda layers: (*layers, SynthesisLayerField(3, 1, "linear", "none"))
                ),
            },
        )
    )
    if "n_grids" in changes:
        changes["zero_grids"] = ()
    try:
        mutant = dataclasses.replace(header, **changes)
    except ValueError:
        return  # not a header the writer can produce (odd 4:2:0 size, long sections …)
    candidate = write_header(mutant, nn + latents) + nn + latents
    started = time.monotonic()
    with contextlib.suppress(CoolchicError):
        decode_stream(candidate, memory_limit=256 << 20)  # keeps each example small
    assert time.monotonic() - started < 10.0
