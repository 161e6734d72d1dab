"""File-name convention: every valid shape parses, every invalid one says what is wrong."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coolchic.errors import InputError
from coolchic.io.naming import YuvName, format_yuv_name, name_from_stem, parse_yuv_name


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("B-MarketPlace_1920x1080_60p_yuv420_10b.yuv", ("B-MarketPlace", 1920, 1080, 60.0, 10)),
        ("kodim15_192x128_01p_yuv420_8b.yuv", ("kodim15", 192, 128, 1.0, 8)),
        ("my_clip_take_2_832x480_29.97p_yuv420_8b.yuv", ("my_clip_take_2", 832, 480, 29.97, 8)),
        ("a_1x2_3_64x32_50p_yuv420_8b.YUV", ("a_1x2_3", 64, 32, 50.0, 8)),
        ("/some/dir_with_1920x1080_60p/x_2x2_1p_yuv420_10b.yuv", ("x", 2, 2, 1.0, 10)),
    ],
)
def test_valid_names_parse_from_the_right(filename: str, expected: tuple) -> None:
    fields = parse_yuv_name(filename)
    assert (fields.name, fields.width, fields.height, fields.fps, fields.bit_depth) == expected
    assert fields.chroma_format == "yuv420"


def test_444_is_parsed_as_its_own_format() -> None:
    assert parse_yuv_name("kodim15_192x128_01p_yuv444_8b.yuv").chroma_format == "yuv444"


@pytest.mark.parametrize(
    ("filename", "message"),
    [
        ("kodim15.yuv", "does not follow the convention <name>_<W>x<H>_<fps>p_yuv420_<8|10>b.yuv"),
        ("kodim15_192x128_01p_yuv420_8b.raw", "does not follow the convention"),
        ("_192x128_01p_yuv420_8b.yuv", "does not follow the convention"),
        ("clip_193x128_01p_yuv420_8b.yuv", "width 193 is odd"),
        ("clip_192x127_01p_yuv420_8b.yuv", "height 127 is odd"),
        ("clip_0x128_01p_yuv420_8b.yuv", "width must be positive, found 0"),
        ("clip_20000x128_01p_yuv420_8b.yuv", "width 20000 is larger than the maximum 16384"),
        ("clip_192x128_01p_yuv420_9b.yuv", "unsupported bit depth 9: expected 8 or 10"),
        ("clip_192x128_01p_yuv420_16b.yuv", "unsupported bit depth 16"),
        ("clip_192x128_01p_yuv422_8b.yuv", "chroma format yuv422 is not supported"),
        ("clip_192x128_0p_yuv420_8b.yuv", "frame rate must be positive"),
        # Only ASCII digits: "٠١" (Arabic-Indic) would pass \d but cannot go in a header.
        ("clip_192x128_\u0660\u0661p_yuv420_8b.yuv", "does not follow the convention"),
        ("clip_\u0661\u0669\u0662x128_01p_yuv420_8b.yuv", "does not follow the convention"),
    ],
)
def test_invalid_names_say_what_was_expected(filename: str, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("|", r"\|").replace("(", r"\(")):
        parse_yuv_name(filename)


names = st.text(
    alphabet=st.characters(whitelist_categories=("Ll", "Lu", "Nd"), whitelist_characters="_-."),
    min_size=1,
    max_size=20,
).filter(lambda s: "/" not in s)


@given(
    name=names,
    width=st.integers(1, 8192).map(lambda v: 2 * v),
    height=st.integers(1, 8192).map(lambda v: 2 * v),
    fps=st.sampled_from(["01", "1", "24", "29.97", "50", "60", "119.88"]),
    bit_depth=st.sampled_from([8, 10]),
)
def test_format_then_parse_round_trips(
    name: str, width: int, height: int, fps: str, bit_depth: int
) -> None:
    filename = format_yuv_name(name, width=width, height=height, fps_text=fps, bit_depth=bit_depth)
    parsed = parse_yuv_name(filename)
    assert parsed == YuvName(name, width, height, fps, "yuv420", bit_depth)
    assert parsed.filename == filename


@pytest.mark.parametrize(
    ("stem", "expected"),
    [
        ("kodim15_192x128_01p_yuv420_8b", ("kodim15", "01")),
        ("my_clip_take_2_832x480_29.97p_yuv444_10b", ("my_clip_take_2", "29.97")),
        ("clip", ("clip", "")),
        ("a_16x8_50p_yuv420_12b", ("a_16x8_50p_yuv420_12b", "")),  # unsupported depth: a stem
        ("x_15x8_50p_yuv420_8b", ("x_15x8_50p_yuv420_8b", "")),  # odd 4:2:0 width: a stem
    ],
)
def test_name_from_stem(stem: str, expected: tuple[str, str]) -> None:
    assert name_from_stem(stem) == expected
