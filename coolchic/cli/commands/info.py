"""``coolchic info FILE``: what a YUV file or PNG image holds."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import click

from coolchic.cli.app import cli
from coolchic.cli.console import stdout_console

logger = logging.getLogger(__name__)


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one machine-readable JSON object.")
def info(file: Path, as_json: bool) -> None:
    """Describe FILE: parsed name fields, frame size, frame count, plane statistics."""
    from coolchic.errors import InputError
    from coolchic.io import is_png_path, is_yuv_path

    if file.suffix.lower() == ".cool":
        description = _describe_stream(file)
    elif is_yuv_path(file):
        description = _describe_yuv(file)
    elif is_png_path(file):
        description = _describe_png(file)
    else:
        raise InputError(f"{file}: unsupported file type, expected .cool, .yuv or .png")
    for warning in description.get("warnings", []):
        logger.warning("%s", warning)
    if as_json:
        click.echo(json.dumps(description))
    else:
        _render(description)


def _plane_statistics(frame: Any) -> dict[str, dict[str, float]]:
    """min/max/mean of each plane, in sample values of the file's bit depth."""
    return {
        name: {
            "width": int(plane.shape[1]),
            "height": int(plane.shape[0]),
            "min": int(plane.min()),
            "max": int(plane.max()),
            "mean": round(float(plane.mean(dtype="float64")), 3),
        }
        for name, plane in zip(frame.plane_names, frame.integer_planes(), strict=True)
    }


def _describe_frame_file(
    path: Path, kind: str, name: str, frame: Any, details: dict[str, Any]
) -> dict[str, Any]:
    """What ``info`` says of a YUV file or a PNG image, keys in the order it prints them: the
    file, its kind, name and size, then ``details``, then the statistics of its planes."""
    return {
        "path": str(path),
        "type": kind,
        "name": name,
        "width": frame.width,
        "height": frame.height,
        **details,
        "planes": _plane_statistics(frame),
    }


def _describe_yuv(path: Path) -> dict[str, Any]:
    from coolchic.io import inspect_yuv, read_yuv_frame

    probe = inspect_yuv(path)
    fields = probe.fields
    details = {
        "fps": fields.fps,
        "fps_text": fields.fps_text,
        "format": fields.chroma_format,
        "bit_depth": fields.bit_depth,
        "frame_bytes": probe.frame_bytes,
        "file_bytes": probe.file_bytes,
        "frames": probe.frames,
        "trailing_bytes": probe.trailing_bytes,
        "warnings": list(probe.warnings),
    }
    return _describe_frame_file(path, "yuv", fields.name, read_yuv_frame(path), details)


def _describe_png(path: Path) -> dict[str, Any]:
    from coolchic.io import read_png

    frame = read_png(path)
    details = {
        "format": frame.format,
        "bit_depth": frame.bit_depth,
        "file_bytes": path.stat().st_size,
        "frames": 1,
        "warnings": [],
    }
    return _describe_frame_file(path, "png", path.stem, frame, details)


def _describe_stream(path: Path) -> dict[str, Any]:
    from coolchic.bitstream.constants import NN_GROUPS
    from coolchic.bitstream.header import read_header, unpack_stream
    from coolchic.errors import BitstreamError, InputError
    from coolchic.report import stream_report

    try:
        data = path.read_bytes()
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror or error})") from None
    header, header_bytes = read_header(data)
    unpack_stream(data)
    try:
        summary = stream_report(header, len(data))
    except ValueError as error:
        raise BitstreamError(f"{path}: header describes an invalid architecture: {error}") from None
    summary["architecture"]["zero_grids"] = [
        i
        for i, zero in enumerate(header.coded_zero_flags)
        if zero  # hyper grids: i >= n_grids
    ]
    return {
        "path": str(path),
        "type": "coolchic",
        "format_version": header.format_version,
        "fps_text": header.fps_text,
        **summary,
        "file_bytes": len(data),
        "header_bytes": header_bytes,
        "nn_bytes": header.nn_bytes,
        "latent_bytes": header.latent_bytes,
        "quantisation": {
            f"{module}_{kind}": {
                "step": f"2^-{coding.exp}",
                "code": "rice" if coding.rice else "expgolomb",
                "order": coding.order,
            }
            for (module, kind), coding in zip(NN_GROUPS, header.nn_coding, strict=True)
        },
        "warnings": [],
    }


def _render_stream(description: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("file", description["path"]),
        ("format version", str(description["format_version"])),
        ("size", f"{description['width']}x{description['height']}"),
        ("format", f"{description['format']} {description['bit_depth']}-bit"),
        ("fps", description["fps_text"] or "(none)"),
        (
            "sections",
            f"header {description['header_bytes']} B, networks {description['nn_bytes']} B, "
            f"latents {description['latent_bytes']} B",
        ),
        ("rate", f"{description['bits']} bits, {description['bpp']:.4f} bpp"),
        (
            "decoder MAC/pixel",
            f"{description['mac_per_pixel']:.0f} ("
            + ", ".join(f"{k} {v:.0f}" for k, v in description["mac_per_pixel_detail"].items())
            + ")",
        ),
    ]
    for key, value in description["architecture"].items():
        rows.append((key.replace("_", " "), str(value)))
    for key, value in description["quantisation"].items():
        family = "Rice parameter" if value["code"] == "rice" else "exp-Golomb order"
        rows.append((key, f"step {value['step']}, {family} {value['order']}"))
    for label, value in rows:
        table.add_row(label, value)
    stdout_console().print(table)


def _render(description: dict[str, Any]) -> None:
    if description.get("type") == "coolchic":
        _render_stream(description)
        return
    from rich.table import Table

    fields = Table(show_header=False, box=None, pad_edge=False)
    fields.add_column(style="bold")
    fields.add_column()
    labels = [
        ("path", "file"),
        ("name", "name"),
        ("format", "format"),
        ("bit_depth", "bit depth"),
        ("fps_text", "fps"),
        ("frame_bytes", "frame bytes"),
        ("file_bytes", "file bytes"),
        ("frames", "whole frames"),
        ("trailing_bytes", "trailing bytes"),
    ]
    for key, label in labels:
        if key in description:
            fields.add_row(label, str(description[key]))
        if key == "name":
            fields.add_row("size", f"{description['width']}x{description['height']}")
    planes = Table(title="first frame", title_justify="left")
    for column in ("plane", "size", "min", "max", "mean"):
        planes.add_column(column, justify="left" if column in ("plane", "size") else "right")
    for name, stats in description["planes"].items():
        planes.add_row(
            name,
            f"{stats['width']}x{stats['height']}",
            str(stats["min"]),
            str(stats["max"]),
            f"{stats['mean']:.3f}",
        )
    console = stdout_console()
    console.print(fields)
    console.print(planes)
