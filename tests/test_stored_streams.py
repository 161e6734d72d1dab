"""Streams written by an earlier coolchic still parse, decode and re-write bit-exactly.

``tests/data/streams/`` holds small ``.cool`` files written by the encoder, and beside each the
header fields, the header length and the SHA-256 of each decoded plane as they were when the
file was written (``make_streams.py`` there says how). Nothing here regenerates them: a change
to the header writer, the reader or the decoder that alters the format fails these tests.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from coolchic.bitstream import header as stream_header
from coolchic.bitstream.header_fields import ADDED_FIELDS, HEADER_FIELDS, Preset
from coolchic.decoder import decode_stream

STREAMS = Path(__file__).resolve().parent / "data" / "streams"
NAMES = sorted(path.stem for path in STREAMS.glob("*.cool"))


def describe(data: bytes) -> dict[str, Any]:
    """What ``data`` parses and decodes to, in the form of the stored ``.json`` files."""
    header, length = stream_header.read_header(data)
    frame = decode_stream(data).frame
    return {
        "header": dataclasses.asdict(header),
        "header_bytes": length,
        "frame": {"format": frame.format, "bit_depth": frame.bit_depth},
        "plane_sha256": [
            hashlib.sha256(plane.astype(plane.dtype.newbyteorder("<")).tobytes()).hexdigest()
            for plane in frame.integer_planes()
        ],
    }


def header_from_json(fields: dict[str, Any]) -> stream_header.StreamHeader:
    """The header the stored fields describe, built without the reader."""
    return stream_header.StreamHeader(
        **{
            **fields,
            "arm_hidden": tuple(fields["arm_hidden"]),
            "synthesis": tuple(
                stream_header.SynthesisLayerField(**layer) for layer in fields["synthesis"]
            ),
            "nn_coding": tuple(
                stream_header.GroupCoding(**coding) for coding in fields["nn_coding"]
            ),
            "zero_grids": tuple(fields["zero_grids"]),
            "zero_hyper_grids": tuple(fields["zero_hyper_grids"]),
        }
    )


def load(name: str) -> tuple[bytes, dict[str, Any]]:
    data = (STREAMS / f"{name}.cool").read_bytes()
    expected = json.loads((STREAMS / f"{name}.json").read_text())
    # A stream was described before the fields of later versions existed: they read as they
    # were before those versions (0 coarser contexts, no stabiliser, no inter-feature context).
    header = expected["header"]
    for version, added in ADDED_FIELDS.items():
        if header["format_version"] < version:
            for name, before in added.items():  # as JSON has them: lists, not tuples
                header.setdefault(name, list(before) if isinstance(before, tuple) else before)
    if header["format_version"] < 7:  # version 7 added the Rice flag of each group's coding
        for coding in header["nn_coding"]:
            coding.setdefault("rice", False)
    return data, expected


def test_the_stored_streams_cover_the_header_branches() -> None:
    headers = [load(name)[1]["header"] for name in NAMES]
    assert len(headers) >= 3
    assert {h["frame_format"] for h in headers} == {"rgb", "yuv420", "yuv444"}
    assert {h["bit_depth"] for h in headers} >= {8, 10}
    assert {h["fps_text"] for h in headers} >= {"", "01", "29.97"}
    assert any(h["arm_hidden"] == [] for h in headers)
    assert any(len(h["arm_hidden"]) > 1 for h in headers)
    assert any(h["preconcat_kernel"] == 0 for h in headers)
    assert any(any(h["zero_grids"]) for h in headers)
    # the older versions still decode
    assert {h["format_version"] for h in headers} == {2, 3, 4, 5, 6, 7, 8, 9}
    assert {h["coarser_contexts"] for h in headers if h["format_version"] == 3} >= {1, 2}
    for flag in ("arm_stabiliser", "synthesis_stabiliser"):
        assert {h[flag] for h in headers if h["format_version"] == 4} == {False, True}
    assert {h["hyper_grids"] for h in headers if h["format_version"] == 5} >= {0, 3}
    assert {h["ifce_features"] for h in headers if h["format_version"] == 5} >= {2, 3}
    # version 6: preset architectures (1 and 4) and one written out (code 0)
    (preset,) = (entry for entry in HEADER_FIELDS if isinstance(entry, Preset))
    version_6 = [header_from_json(h) for h in headers if h["format_version"] == 6]
    assert {preset.code(h) for h in version_6} == {0, 1, 4}
    # version 7: both codes of the parameter groups
    codes = {c["rice"] for h in headers if h["format_version"] == 7 for c in h["nn_coding"]}
    assert codes == {False, True}
    # version 8: the 16-wide synthesis presets
    version_8 = [header_from_json(h) for h in headers if h["format_version"] == 8]
    assert {preset.code(h) for h in version_8} == {5, 6}
    # version 9: the 16-wide ARM preset
    version_9 = [header_from_json(h) for h in headers if h["format_version"] == 9]
    assert {preset.code(h) for h in version_9} == {7}
    assert any(
        layer["kind"] == "residual" and layer["kernel"] == 3
        for h in headers
        for layer in h["synthesis"]
    )
    for name in NAMES:
        assert len((STREAMS / f"{name}.cool").read_bytes()) < 3000


@pytest.mark.parametrize("name", NAMES)
def test_stored_stream_decodes_as_when_written(name: str) -> None:
    data, expected = load(name)
    assert json.loads(json.dumps(describe(data))) == expected


@pytest.mark.parametrize("name", NAMES)
def test_stored_stream_is_written_again_byte_for_byte(name: str) -> None:
    data, expected = load(name)
    header, nn_bytes, latent_bytes = stream_header.unpack_stream(data)
    length = expected["header_bytes"]
    assert stream_header.write_header(header, data[length:]) == data[:length]
    assert stream_header.pack_stream(header, nn_bytes, latent_bytes) == data
    stored = header_from_json(expected["header"])
    assert stored == header
    assert stream_header.write_header(stored, data[length:]) == data[:length]
