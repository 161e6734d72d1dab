"""``coolchic recipes``: the training schedules and their iteration budgets."""

from __future__ import annotations

import json

import click

from coolchic.cli.app import cli
from coolchic.cli.console import stdout_console


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the recipes as JSON.")
def recipes(as_json: bool) -> None:
    """List the encoding recipes, their phases and iteration budgets."""
    import dataclasses

    from coolchic.train.recipes import RECIPES

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
    from rich.table import Table

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
