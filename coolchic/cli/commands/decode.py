"""``coolchic decode IN.cool -o OUT``: rebuild the frame a bitstream describes."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from coolchic.cli.app import AppContext, cli

logger = logging.getLogger(__name__)


def output_path_for(requested: Path, *, is_dir: bool, header: object, stem: str) -> Path:
    """Where to write: exactly ``requested``, or inside it (a folder) named by the convention.

    The stream stores no source name: the name comes from the ``.cool`` file's ``stem`` (its
    ``<name>`` part when the stem follows the YUV convention), the frame rate from the stream,
    else from the stem, else ``01``.
    """
    from coolchic.bitstream.header import StreamHeader
    from coolchic.io.naming import format_yuv_name, name_from_stem

    assert isinstance(header, StreamHeader)
    if not is_dir:
        return requested
    name, stem_fps = name_from_stem(stem)
    if header.frame_format == "rgb":
        return requested / f"{name}.png"
    return requested / format_yuv_name(
        name,
        width=header.width,
        height=header.height,
        fps_text=header.fps_text or stem_fps or "01",
        chroma_format=header.frame_format,  # type: ignore[arg-type]
        bit_depth=header.bit_depth,
    )


@cli.command()
@click.argument("bitstream", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    "output_text",
    required=True,
    type=click.Path(),
    help="Output file (.yuv for YUV streams, .png for RGB), or a folder (existing, or ending "
    "in /) to name it by the <name>_<W>x<H>_<fps>p_yuv420_<bits>b.yuv convention, <name> "
    "taken from BITSTREAM's file name.",
)
@click.pass_obj
def decode(app: AppContext, bitstream: Path, output_text: str) -> None:
    """Decode BITSTREAM (.cool) into a YUV file or a PNG image."""
    output = Path(output_text)
    import time

    from coolchic.decoder import decode_stream
    from coolchic.device import set_torch_threads
    from coolchic.errors import InputError
    from coolchic.io import check_output_suffix, parse_yuv_name, write_frame

    set_torch_threads(app.threads, import_torch=False)  # the decoder itself is torch-free
    try:
        data = bitstream.read_bytes()
    except OSError as error:
        raise InputError(f"{bitstream}: cannot read ({error.strerror or error})") from None
    started = time.perf_counter()
    decoded = decode_stream(data, stem=bitstream.stem)
    elapsed = time.perf_counter() - started
    is_dir = output.is_dir() or output_text.endswith(("/", "\\"))
    target = output_path_for(output, is_dir=is_dir, header=decoded.header, stem=bitstream.stem)
    if is_dir:
        target.parent.mkdir(parents=True, exist_ok=True)
    check_output_suffix(target, decoded.frame.format)
    if decoded.frame.format != "rgb":
        try:
            fields = parse_yuv_name(target)
            frame = decoded.frame
            if (fields.width, fields.height, fields.bit_depth, fields.chroma_format) != (
                frame.width,
                frame.height,
                frame.bit_depth,
                frame.format,
            ):
                logger.warning(
                    "%s: the name says %dx%d %s %d-bit but the stream is %dx%d %s %d-bit",
                    target,
                    fields.width,
                    fields.height,
                    fields.chroma_format,
                    fields.bit_depth,
                    frame.width,
                    frame.height,
                    frame.format,
                    frame.bit_depth,
                )
        except InputError:
            logger.warning(
                "%s does not follow the <name>_<W>x<H>_<fps>p_yuv420_<bits>b.yuv convention; "
                "tools will not know it is %dx%d %d-bit",
                target.name,
                decoded.frame.width,
                decoded.frame.height,
                decoded.frame.bit_depth,
            )
    write_frame(target, decoded.frame)
    click.echo(
        f"{target}: {decoded.frame.width}x{decoded.frame.height} {decoded.frame.format} "
        f"{decoded.frame.bit_depth}-bit, decoded in {elapsed:.2f} s"
    )
