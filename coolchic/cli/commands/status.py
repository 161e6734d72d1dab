"""``coolchic status``: the watch-folder daemon's journal, as a table or JSON."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import click

from coolchic.cli.app import cli
from coolchic.cli.console import stdout_console
from coolchic.cli.options import state_dir_option

JOB_STATES = ("queued", "running", "retry", "done", "failed")


@cli.command()
@click.argument("inbox", required=False, type=click.Path(file_okay=False, path_type=Path))
@state_dir_option("The daemon's --state-dir (default: INBOX/.coolchic).")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(JOB_STATES),
    help="Only jobs in this state (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
def status(
    inbox: Path | None, state_dir: Path | None, states: tuple[str, ...], as_json: bool
) -> None:
    """Show every file the daemon journaled: state, attempts, bpp, PSNR, error."""
    from coolchic.daemon.config import STATE_DIR_NAME
    from coolchic.daemon.journal import JOURNAL_NAME, Journal

    if state_dir is None:
        if inbox is None:
            raise click.UsageError("give INBOX or --state-dir")
        state_dir = inbox / STATE_DIR_NAME
    path = state_dir / JOURNAL_NAME
    with Journal(path, read_only=True) as journal:
        rows = journal.rows(states or None)
        counts = journal.counts()
    if as_json:
        payload = {"journal": str(path), "counts": counts, "jobs": [r.as_dict() for r in rows]}
        click.echo(json.dumps(payload))
        return
    from rich.table import Table

    base = _common_folder([row.path for row in rows])
    table = Table(
        title=f"coolchic journal {path}" + (f" (files in {base})" if rows else ""),
        caption=", ".join(f"{counts[s]} {s}" for s in JOB_STATES),
    )
    for column in ("id", "file", "state", "tries", "updated", "bpp", "PSNR dB", "error / input"):
        justify = "right" if column in ("id", "tries", "bpp", "PSNR dB") else "left"
        table.add_column(column, justify=justify, overflow="fold")
    for row in rows:
        note = row.error if row.state in ("failed", "retry") else row.disposed_to
        if note and note.startswith(base + os.sep):
            note = os.path.relpath(note, base)
        table.add_row(
            str(row.id),
            os.path.relpath(row.path, base),
            row.state,
            str(row.attempts),
            time.strftime("%m-%d %H:%M:%S", time.localtime(row.updated_at)),
            "" if row.bpp is None else f"{row.bpp:.4f}",
            "" if row.psnr_db is None else f"{row.psnr_db:.2f}",
            note or "",
        )
    stdout_console().print(table)


def _common_folder(paths: list[str]) -> str:
    """The folder that holds every path (the inbox, usually), to print shorter names."""
    if not paths:
        return ""
    try:
        return os.path.commonpath([os.path.dirname(p) for p in paths])
    except ValueError:  # mixed absolute and relative paths, or drives
        return ""
