"""encode/decode/info on the command line, and decoding of hostile bytes (fuzzing)."""

from __future__ import annotations

import json
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coolchic.bitstream.header import pack_stream, read_header, unpack_stream
from coolchic.cli import main
from coolchic.codec import EncoderConfig, decode_stream, encode
from coolchic.errors import BitstreamError
from coolchic.io import Frame
from tests.conftest import MakeYuv


@pytest.fixture(scope="module")
def stream() -> bytes:
    rng = np.random.default_rng(1)
    y = np.clip(
        np.add.outer(np.arange(16), np.arange(16)) * 7 + rng.integers(0, 9, (16, 16)), 0, 255
    )
    u = np.full((8, 8), 120)
    v = np.full((8, 8), 130)
    frame = Frame.from_integer_planes(
        tuple(p.astype(np.uint8) for p in (y, u, v)), fmt="yuv420", bit_depth=8
    )
    return encode(frame, EncoderConfig(recipe="instant")).bitstream


def test_encode_aliases_decode_to_folder_and_info(
    make_yuv: MakeYuv, tmp_path: Path, capsys
) -> None:
    source = make_yuv("my_clip_16x8_50p_yuv420_8b.yuv")
    out = tmp_path / "a.cool"
    args = [
        "encode",
        "--input",
        str(source),
        "--output",
        str(out),
        "--recipe",
        "instant",
        "--start_lr",
        "0.01",
        "--layers_arm",
        "8,8",
        "--n_ctx_rowcol",
        "2",
        "--latent_n_grids",
        "4",
        "--layers_synthesis",
        "16-1-linear-relu,X-1-linear-none",
        "--ifce-features",
        "2",
        "--hyper-grids",
        "1",
        "--enc_results_path",
        str(tmp_path / "r.json"),
        "--json",
    ]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["architecture"]["layers_arm"] == "8,8"
    assert report["architecture"]["layers_synthesis"] == "16-1-linear-relu,3-1-linear-none"
    assert (report["architecture"]["ifce_features"], report["architecture"]["hyper_grids"]) == (
        2,
        1,
    )
    assert json.loads((tmp_path / "r.json").read_text())["bits"] == report["bits"]

    # The stream stores no name: a folder output is named after the .cool file, with the
    # stored frame rate, and a conventional .cool name (as batch writes) gives its name part.
    assert main(["decode", str(out), "-o", str(tmp_path / "dec") + "/"]) == 0
    assert "decoded in" in capsys.readouterr().out
    named = tmp_path / "dec" / "a_16x8_50p_yuv420_8b.yuv"
    assert named.stat().st_size == 16 * 8 * 3 // 2
    conventional = tmp_path / "my_clip_16x8_50p_yuv420_8b.cool"
    conventional.write_bytes(out.read_bytes())
    assert main(["decode", str(conventional), "-o", str(tmp_path / "dec")]) == 0
    assert "my_clip_16x8_50p_yuv420_8b.yuv" in capsys.readouterr().out
    assert (tmp_path / "dec" / "my_clip_16x8_50p_yuv420_8b.yuv").read_bytes() == named.read_bytes()

    assert main(["info", "--json", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["width"], info["height"], info["fps_text"]) == (16, 8, "50")
    assert "name" not in info and info["format_version"] == 9
    assert info["bits"] == 8 * out.stat().st_size
    assert info["mac_per_pixel"] == report["mac_per_pixel"]
    assert info["header_bytes"] + info["nn_bytes"] + info["latent_bytes"] == out.stat().st_size


def test_decode_warns_about_unconventional_yuv_names(stream: bytes, tmp_path: Path, capsys) -> None:
    path = tmp_path / "s.cool"
    path.write_bytes(stream)
    assert main(["decode", str(path), "-o", str(tmp_path / "plain.yuv")]) == 0
    assert "does not follow" in capsys.readouterr().err
    assert (tmp_path / "plain.yuv").stat().st_size == 384
    assert main(["decode", str(path), "-o", str(tmp_path / "x_8x8_01p_yuv420_8b.yuv")]) == 0
    assert "the name says 8x8" in capsys.readouterr().err
    assert main(["decode", str(path), "-o", str(tmp_path / "wrong.png")]) == 1
    assert "written as .yuv" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["encode"], 2),
        (["encode", "x.yuv", "--layers-synthesis", "40-2-linear-relu"], 2),
        (["encode", "x.yuv", "--recipe", "turbo"], 2),
        (["encode", "x.yuv", "--lmbda", "0"], 2),
        (["encode", "x.yuv", "--iterations-scale", "0"], 2),
        (["encode", "x.yuv", "--hyper-grids", "2"], 2),
        (["encode", "x.yuv", "--ifce-features", "2", "--coarser-contexts", "1"], 2),
        (["encode", "x.yuv", "--iterations-scale", "11"], 2),
        (["decode", "nothing.cool"], 2),
    ],
)
def test_encode_usage_errors(args: list[str], code: int, capsys) -> None:
    assert main(args) == code
    assert "Traceback" not in capsys.readouterr().err


def test_iterations_scale_stretches_the_recipe(make_yuv: MakeYuv, tmp_path: Path) -> None:
    from coolchic.train.recipes import get_recipe, scaled

    source = make_yuv("scaled_16x8_01p_yuv420_8b.yuv")
    report = tmp_path / "r.json"
    args = ["encode", str(source), "-o", str(tmp_path / "s.cool"), "--recipe", "instant"]
    assert main([*args, "--iterations-scale", "1.5", "--report", str(report)]) == 0
    written = json.loads(report.read_text())
    assert written["iterations_scale"] == 1.5
    assert written["iterations"] == scaled(get_recipe("instant"), 1.5).iterations == 135


def test_encode_input_errors_are_one_line(make_yuv: MakeYuv, tmp_path: Path, capsys) -> None:
    source = make_yuv()
    assert (
        main(["encode", str(source), "--recipe", "instant", "--decoded", str(tmp_path / "d.png")])
        == 1
    )
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "written as .yuv" in err
    bad = tmp_path / "noname.yuv"
    bad.write_bytes(b"\0" * 100)
    assert main(["encode", str(bad), "-o", str(tmp_path / "o.cool")]) == 1
    assert "does not follow the convention" in capsys.readouterr().err
    assert not (tmp_path / "o.cool").exists()


@pytest.mark.parametrize("cut", [0, 3, 10, 40, -1])
def test_truncated_streams_fail_cleanly(stream: bytes, tmp_path: Path, cut: int, capsys) -> None:
    data = stream[:cut] if cut >= 0 else stream[:-1]
    path = tmp_path / "cut.cool"
    path.write_bytes(data)
    for command in (["decode", str(path), "-o", str(tmp_path / "o.yuv")], ["info", str(path)]):
        assert main(command) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and err.count("\n") == 0, err


def _repacked(stream: bytes, nn: bytes, latents: bytes) -> bytes:
    header, _, _ = unpack_stream(stream)
    return pack_stream(header, nn, latents)


def _restamped(body: bytearray, stream: bytes) -> bytes:
    """Recompute the CRC-32 where ``stream``'s header keeps it (over header and sections)."""
    _, length = read_header(stream)
    crc = zlib.crc32(bytes(body[: length - 4] + body[length:]))
    body[length - 4 : length] = crc.to_bytes(4, "big")
    return bytes(body)


@settings(
    max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_fuzzed_streams_raise_only_bitstream_errors(stream: bytes, data: st.DataObject) -> None:
    """Random flips anywhere, and valid-CRC garbage in the sections, end in BitstreamError."""
    header, nn, latents = unpack_stream(stream)
    mode = data.draw(st.sampled_from(["flip", "nn", "latents", "random", "header_field"]))
    if mode == "flip":
        buffer = bytearray(stream)
        for _ in range(data.draw(st.integers(1, 4))):
            index = data.draw(st.integers(0, len(buffer) - 1))
            buffer[index] ^= data.draw(st.integers(1, 255))
        candidate = bytes(buffer)
    elif mode == "nn":
        garbage = data.draw(st.binary(min_size=0, max_size=len(nn) + 8))
        candidate = _repacked(stream, garbage, latents)
    elif mode == "latents":
        n_words = data.draw(st.integers(0, len(latents) // 4 + 2))
        garbage = data.draw(st.binary(min_size=4 * n_words, max_size=4 * n_words))
        candidate = _repacked(stream, nn, garbage)
    elif mode == "random":
        candidate = data.draw(st.binary(min_size=0, max_size=400))
    else:
        body = bytearray(stream)
        index = data.draw(st.integers(3, 60))
        body[index] = data.draw(st.integers(0, 255))
        # Recompute the CRC so that the field values themselves are what is tested.
        candidate = _restamped(body, stream)
    started = time.monotonic()
    try:
        frame = decode_stream(candidate).frame
    except BitstreamError:
        pass
    else:
        assert frame.width == header.width or candidate != stream
    assert time.monotonic() - started < 5.0


def test_unknown_version_is_named(stream: bytes, tmp_path: Path, capsys) -> None:
    body = bytearray(stream)
    body[2] = 10  # the format version byte
    path = tmp_path / "v10.cool"
    path.write_bytes(_restamped(body, stream))
    assert main(["info", str(path)]) == 1
    err = capsys.readouterr().err
    assert "version" in err and "10" in err


def test_version_1_streams_ask_for_a_re_encode(tmp_path: Path, capsys) -> None:
    path = tmp_path / "old.cool"
    path.write_bytes(b"CCHC\x01\x00\x45" + bytes(66))
    for command in (["info", str(path)], ["decode", str(path), "-o", str(tmp_path / "o.yuv")]):
        assert main(command) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and err.count("\n") == 0, err
        assert "format version 1" in err and "re-encode" in err
