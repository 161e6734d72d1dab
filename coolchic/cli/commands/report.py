"""``coolchic report OUT_DIR``: RD tables of an output folder, BD-rates against x265, HTML."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from coolchic.cli.app import AppContext, cli
from coolchic.cli.console import stdout_console

logger = logging.getLogger(__name__)


def _parse_qps(_ctx: click.Context, _param: click.Parameter, text: str) -> tuple[int, ...]:
    try:
        qps = tuple(int(item) for item in text.split(","))
    except ValueError:
        raise click.BadParameter(f"expected integers separated by commas, found {text!r}") from None
    if not qps or any(not 0 <= qp <= 51 for qp in qps):
        raise click.BadParameter("x265 QPs lie in 0..51")
    return qps


@cli.command()
@click.argument("out_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--anchor",
    type=click.Choice(["x265"]),
    help="Encode each input with this codec too (x265 veryslow all-intra, tune psnr) and give "
    "coolchic's BD-rate against it. Needs the inputs where the reports say they are.",
)
@click.option(
    "--qps",
    default="22,27,32,37,42,47",
    show_default=True,
    callback=_parse_qps,
    help="QPs of the x265 anchor.",
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a self-contained HTML page: tables, RD plot, thumbnails.",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the RD curves as a PNG (needs matplotlib).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the curves as JSON.")
@click.pass_obj
def report(
    app: AppContext,
    out_dir: Path,
    anchor: str | None,
    qps: tuple[int, ...],
    html_path: Path | None,
    plot_path: Path | None,
    as_json: bool,
) -> None:
    """Rate-distortion table of every input in OUT_DIR (the reports batch and watch wrote).

    Reports of one input at one recipe form a curve (encode it at several λ with
    batch --lmbda a,b,c,d). With --anchor x265, each input is coded by x265 too and the
    BD-rate (negative: coolchic needs fewer bits for the same PSNR) is given with the PSNR range
    it covers.
    """
    from coolchic.evaluation.report import (
        anchor_curve,
        as_dict,
        html_page,
        plot_curves,
        read_curves,
    )
    from coolchic.evaluation.x265 import missing_tools

    curves, problems = read_curves(out_dir)
    for problem in problems:
        logger.warning("%s", problem)
    if not curves:
        raise click.ClickException(f"no coolchic report (*.json) found in {out_dir}")
    if anchor == "x265":
        missing = missing_tools()
        if missing:
            raise click.ClickException(
                f"--anchor x265 needs {', '.join(missing)} (Debian: apt-get install x265 ffmpeg)"
            )
        for curve in curves:
            logger.info("encoding %s with x265 at %d QPs", curve.input_path.name, len(qps))
            anchor_curve(curve, qps, threads=app.threads or 1)
    plot = None
    if plot_path is not None or html_path is not None:
        plot = plot_curves(curves)
        if plot is None:
            logger.warning("no RD plot: matplotlib is not installed (pip install matplotlib)")
        elif plot_path is not None:
            plot_path.write_bytes(plot)
    if html_path is not None:
        html_path.write_text(html_page(curves, plot), encoding="utf-8")
        logger.info("wrote %s", html_path)
    if as_json:
        click.echo(json.dumps([as_dict(curve) for curve in curves]))
        return
    _print_tables(curves)


def _print_tables(curves) -> None:
    from rich.table import Table

    console = stdout_console()
    for curve in curves:
        table = Table(title=f"{curve.label}, {curve.metric}")
        for column in ("λ", "bpp", "PSNR dB", "encode s"):
            table.add_column(column, justify="right")
        for point in curve.points:
            seconds = "" if point.encode_seconds is None else f"{point.encode_seconds:.1f}"
            table.add_row(f"{point.lmbda:g}", f"{point.bpp:.4f}", f"{point.psnr:.2f}", seconds)
        console.print(table)
        if curve.bd is not None:
            span = ""
            if curve.bd.psnr_range is not None:
                span = " over {:.2f}-{:.2f} dB".format(*curve.bd.psnr_range)
            console.print(
                f"BD-rate against x265: {curve.bd.text()}{span} "
                f"({curve.bd.test_points} coolchic vs {curve.bd.anchor_points} x265 points)"
            )
        elif curve.anchor_note:
            console.print(f"no anchor: {curve.anchor_note}")
