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

    if is_yuv_path(file):
        description = _describe_yuv(file)
    elif is_png_path(file):
        description = _describe_png(file)
    else:
        raise InputError(f"{file}: unsupported file type, expected .yuv or .png")
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


def _describe_yuv(path: Path) -> dict[str, Any]:
    from coolchic.io import inspect_yuv, read_yuv_frame

    probe = inspect_yuv(path)
    fields = probe.fields
    frame = read_yuv_frame(path)
    return {
        "path": str(path),
        "type": "yuv",
        "name": fields.name,
        "width": fields.width,
        "height": fields.height,
        "fps": fields.fps,
        "fps_text": fields.fps_text,
        "format": fields.chroma_format,
        "bit_depth": fields.bit_depth,
        "frame_bytes": probe.frame_bytes,
        "file_bytes": probe.file_bytes,
        "frames": probe.frames,
        "trailing_bytes": probe.trailing_bytes,
        "warnings": list(probe.warnings),
        "planes": _plane_statistics(frame),
    }


def _describe_png(path: Path) -> dict[str, Any]:
    from coolchic.io import read_png

    frame = read_png(path)
    return {
        "path": str(path),
        "type": "png",
        "name": path.stem,
        "width": frame.width,
        "height": frame.height,
        "format": frame.format,
        "bit_depth": frame.bit_depth,
        "file_bytes": path.stat().st_size,
        "frames": 1,
        "warnings": [],
        "planes": _plane_statistics(frame),
    }


def _render(description: dict[str, Any]) -> None:
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
