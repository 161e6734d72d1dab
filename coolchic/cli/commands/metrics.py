"""``coolchic metrics A B``: PSNR of B against A (same size and format)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import click

from coolchic.cli.app import cli
from coolchic.cli.console import stdout_console


def _json_number(value: float) -> float | str:
    """JSON has no infinity: an exact match is written as the string "inf"."""
    return "inf" if math.isinf(value) else round(value, 6)


@cli.command()
@click.argument("reference", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("distorted", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one machine-readable JSON object.")
def metrics(reference: Path, distorted: Path, as_json: bool) -> None:
    """PSNR of DISTORTED against REFERENCE: per plane, 4:2:0-weighted, 6:1:1, RGB."""
    from coolchic.errors import InputError
    from coolchic.io import frame_metrics, read_frame

    frame_a = read_frame(reference)
    frame_b = read_frame(distorted)
    try:
        result = frame_metrics(frame_a, frame_b)
    except ValueError as error:
        raise InputError(f"cannot compare {reference} and {distorted}: {error}") from None
    values = result.as_dict()
    if as_json:
        payload = {
            "reference": str(reference),
            "distorted": str(distorted),
            "format": result.format,
            "width": frame_a.width,
            "height": frame_a.height,
            "bit_depth": frame_a.bit_depth,
            **{key: _json_number(value) for key, value in values.items()},
            **{
                f"mse_{name.lower()}": mse
                for name, mse in zip(result.plane_names, result.plane_mse, strict=True)
            },
        }
        click.echo(json.dumps(payload))
        return
    from rich.table import Table

    table = Table(show_header=True)
    table.add_column("metric")
    table.add_column("PSNR (dB)", justify="right")
    for key, value in values.items():
        table.add_row(key, "inf" if math.isinf(value) else f"{value:.4f}")
    stdout_console().print(table)
