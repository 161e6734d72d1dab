"""``coolchic recipes``: the training schedules, and with ``--size`` their time on this machine."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import click

from coolchic.cli.app import AppContext, cli
from coolchic.cli.console import stdout_console

logger = logging.getLogger(__name__)

_SIZE = re.compile(r"^([1-9][0-9]*)x([1-9][0-9]*)$")


def parse_size(
    _ctx: click.Context, _param: click.Parameter, text: str | None
) -> tuple[int, int] | None:
    """``"1920x1080"`` → ``(1920, 1080)``; even sizes only (4:2:0 frames)."""
    from coolchic.io.naming import MAX_DIMENSION

    if text is None:
        return None
    match = _SIZE.match(text.strip().lower())
    if match is None:
        raise click.BadParameter(f"expected WIDTHxHEIGHT such as 1920x1080, found {text!r}")
    width, height = int(match[1]), int(match[2])
    for name, value in (("width", width), ("height", height)):
        if value % 2 or value > MAX_DIMENSION:
            raise click.BadParameter(
                f"{name} must be even and at most {MAX_DIMENSION}, found {value}"
            )
    return width, height


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the recipes as JSON.")
@click.option(
    "--size",
    metavar="WxH",
    default=None,
    callback=parse_size,
    help="Show each recipe's expected encode time and peak memory for a frame of this size, "
    "from a few training steps timed on this machine (a few seconds; more for large frames).",
)
@click.option(
    "--lmbda",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="λ of the encodes to forecast (it picks the decoder; default: encode's default).",
)
@click.pass_obj
def recipes(
    app: AppContext, as_json: bool, size: tuple[int, int] | None, lmbda: float | None
) -> None:
    """List the encoding recipes, their phases and iteration budgets (and times, with --size)."""
    import dataclasses

    from coolchic.train.recipes import RECIPES

    if size is not None:
        width, height = size
        rows = _forecast_rows(app, width, height, lmbda)
        if as_json:
            click.echo(json.dumps({"width": width, "height": height, "recipes": rows}))
        else:
            _print_forecast(width, height, rows)
        return
    if lmbda is not None:
        raise click.UsageError("--lmbda only applies with --size")
    if as_json:
        click.echo(
            json.dumps(
                {
                    name: {"iterations": recipe.iterations, **dataclasses.asdict(recipe)}
                    for name, recipe in RECIPES.items()
                }
            )
        )
        return
    _print_recipes()


def _print_recipes() -> None:
    """The recipes as a table: a row for the warm-up, then one per training phase."""
    from rich.table import Table

    from coolchic.train.recipes import RECIPES

    table = Table(title="recipes (warm-up iterations count every candidate)")
    for column in ("recipe", "total", "step", "iterations", "learning rate", "proxy", "trains"):
        table.add_column(column, justify="right" if column in ("total", "iterations") else "left")
    for name, recipe in RECIPES.items():
        warmup = recipe.warmup
        table.add_row(
            name,
            str(recipe.iterations),
            "warm-up " + " → ".join(f"{c}×{i}" for c, i in warmup.stages),
            str(warmup.iterations),
            f"{warmup.lr:g}",
            "softround",
            "all, best kept",
        )
        for phase in recipe.phases:
            patience = f", patience {phase.patience}" if phase.patience else ""
            table.add_row(
                "",
                "",
                phase.name,
                str(phase.iterations),
                f"{phase.lr_start:g}→{phase.lr_end:g} cosine",
                phase.quantizer,
                (
                    "all"
                    if len(phase.modules) == 4
                    else "networks"
                    if "latents" not in phase.modules
                    else "+".join(phase.modules)
                )
                + patience,
            )
        table.add_section()
    stdout_console().print(table)


def _forecast_rows(
    app: AppContext, width: int, height: int, lmbda: float | None
) -> dict[str, dict[str, Any]]:
    """Expected time and memory of every recipe at this size, one calibration per decoder."""
    from coolchic.codec import DEFAULT_LMBDA, default_model_config
    from coolchic.device import resolve_device, set_torch_threads
    from coolchic.forecast import StepTimes, calibrate, forecast, synthetic_target
    from coolchic.model.complexity import mac_per_pixel
    from coolchic.resources import estimate_encode_bytes
    from coolchic.train.recipes import RECIPES

    lmbda = DEFAULT_LMBDA if lmbda is None else lmbda
    threads = set_torch_threads(app.threads)
    device = resolve_device(app.device)
    frame_target = None
    steps_by_config: dict[Any, StepTimes] = {}
    rows: dict[str, dict[str, Any]] = {}
    for name, recipe in RECIPES.items():
        config = default_model_config(lmbda, name, pixels=width * height)
        if config not in steps_by_config:
            if frame_target is None:
                frame_target = synthetic_target(width, height, device=device)
            logger.info(
                "timing training steps of the %.0f MAC/pixel decoder at %dx%d on %s, %d threads",
                mac_per_pixel(config, height, width).total,
                width,
                height,
                device,
                threads,
            )
            steps_by_config[config] = calibrate(frame_target, config, lmbda, device)
        steps = steps_by_config[config]
        expected = forecast(recipe, steps, pixels=width * height)
        seconds = expected.seconds - steps.calibration_s  # an encode calibrates once, briefly
        rows[name] = {
            "iterations": recipe.iterations,
            "mac_per_pixel": round(mac_per_pixel(config, height, width).total, 1),
            "expected_seconds": round(seconds, 1),
            "seconds_per_megapixel": round(seconds / (width * height / 1e6), 1),
            "peak_memory_bytes": estimate_encode_bytes(width, height, config),
            **steps.as_dict(),
        }
    return rows


def _print_forecast(width: int, height: int, rows: dict[str, dict[str, Any]]) -> None:
    """The forecast as a table that fits 80 columns."""
    from rich import box
    from rich.table import Table

    from coolchic.decode_memory import format_bytes
    from coolchic.forecast import format_duration

    table = Table(
        title=f"recipes at {width}x{height} on this machine", box=box.SIMPLE_HEAD, width=78
    )
    for column in ("recipe", "iterations", "MAC/pixel", "expected time", "per megapixel", "memory"):
        table.add_column(column, justify="left" if column == "recipe" else "right")
    for name, row in rows.items():
        table.add_row(
            name,
            f"{row['iterations']:,}",
            f"{row['mac_per_pixel']:,.0f}",
            format_duration(row["expected_seconds"]),
            format_duration(row["seconds_per_megapixel"]),
            format_bytes(row["peak_memory_bytes"]),
        )
    stdout_console().print(table)
