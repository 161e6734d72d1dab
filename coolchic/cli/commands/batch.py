"""``coolchic batch PATH...``: encode every input of a folder, a report per file, a summary.

Its encode options are shared with ``watch``: see :mod:`coolchic.cli.options`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from coolchic.cli.app import AppContext, cli
from coolchic.cli.console import stdout_console
from coolchic.cli.exit_codes import BATCH_FAILURES
from coolchic.cli.options import DEFAULT_OUTPUT_NAME, EncodeOptions, encode_options

if TYPE_CHECKING:
    from coolchic.jobs.inputs import InputFile
    from coolchic.jobs.types import JobId, JobResult
    from coolchic.train.progress import ProgressEvent

logger = logging.getLogger(__name__)


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help=f"Folder for the .cool and .json files (default: DIR/{DEFAULT_OUTPUT_NAME} when one "
    "folder is given).",
)
@encode_options
@click.option("--force", is_flag=True, help="Re-encode even when an up-to-date output exists.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line per file on stdout.")
@click.pass_context
def batch(
    ctx: click.Context,
    paths: tuple[Path, ...],
    output: Path | None,
    options: EncodeOptions,
    force: bool,
    as_json: bool,
) -> None:
    """Encode every .yuv file (and .png with --include-png) of the folders or files PATHS.

    Each input gets <stem>.cool and <stem>.json (the report) in the output folder, mirroring
    sub-folders; with several λ, one <stem>.l<λ>.cool and .json per λ. An output that is up
    to date (same content, same settings) is not encoded again. A failing file never stops the
    batch. Exit code 0 when every encode succeeded or was skipped, 3 when some failed.
    """
    from coolchic.batch import plan_batch, run_batch
    from coolchic.cli.progress import MultiFileProgress
    from coolchic.resources import memory_budget

    app: AppContext = ctx.obj
    output = output or _default_output(paths)
    points = options.point_settings(app)
    settings = points[0]
    include_png = options.include_png
    inputs = collect_inputs(paths, output, recursive=options.recursive, include_png=include_png)
    if not inputs:
        kinds = ".yuv or .png" if include_png else ".yuv"
        logger.warning("no %s input found in %s", kinds, ", ".join(map(str, paths)))
        return
    logger.info(
        "%d inputs, recipe %s, %s, %s at a time with %s threads each %s, outputs in %s",
        len(inputs),
        options.recipe,
        options.aim,
        options.jobs or ("as many as the cluster takes" if options.scheduler else 1),
        settings.threads or "the worker's share of",
        options.where,
        output,
    )
    plan = plan_batch(inputs, output, points, force=force)
    with (
        options.executor() as executor,
        MultiFileProgress(total=len(plan.items), quiet=app.verbosity < 0) as display,
    ):
        listener = _JsonLines(display) if as_json else display
        memory = None if options.scheduler else memory_budget(settings.memory_limit)
        results = run_batch(plan, executor, listener=listener, memory=memory)
    if not as_json:
        render_summary(results, f"recipe {options.recipe}, {options.aim}")
    if any(result.status == "failed" for result in results):
        ctx.exit(BATCH_FAILURES)


def _default_output(paths: tuple[Path, ...]) -> Path:
    """``DIR/coolchic-out`` when PATHS is one folder; anything else needs ``--output``."""
    if len(paths) != 1 or not paths[0].is_dir():
        raise click.UsageError("give --output when PATHS is not exactly one folder")
    return paths[0] / DEFAULT_OUTPUT_NAME


def collect_inputs(paths: tuple[Path, ...], output: Path, *, recursive: bool, include_png: bool):
    """The inputs in PATHS: folders are searched, files are taken as given (deduplicated)."""
    from coolchic.jobs.inputs import InputFile, find_inputs, refusal_reason

    inputs: list[InputFile] = []
    seen: set[Path] = set()
    for path in paths:
        if path.is_dir():
            found = find_inputs(
                path, recursive=recursive, include_png=include_png, exclude=[output]
            )
        else:  # named on the command line: any regular file, links followed anywhere
            root = path.resolve().parent
            found = [InputFile(path, root, Path(path.name), refusal_reason(path, root))]
        for item in found:
            key = item.path.resolve()
            if key not in seen:
                seen.add(key)
                inputs.append(item)
    return inputs


class _JsonLines:
    """Prints each result as one JSON line on stdout as soon as it is known."""

    def __init__(self, display: Any) -> None:
        self.display = display

    def job_started(self, job_id: JobId, label: str) -> None:
        self.display.job_started(job_id, label)

    def job_progress(self, job_id: JobId, event: ProgressEvent) -> None:
        self.display.job_progress(job_id, event)

    def job_finished(self, job_id: JobId, result: JobResult) -> None:
        self.display.job_finished(job_id, result)
        click.echo(json.dumps(result.as_dict(), default=str))


def render_summary(results: list[JobResult], what: str) -> None:
    """The summary table on stdout: file (and rate point), status, bpp, PSNR, time, reason of
    failure; one row per rate point. ``what``: the recipe and the λ or targets, for the title."""
    from rich.table import Table

    counts = {status: sum(r.status == status for r in results) for status in ("done", "skipped")}
    failed = len(results) - counts["done"] - counts["skipped"]
    table = Table(
        title=f"coolchic batch: {what}",
        caption=f"{counts['done']} encoded, {counts['skipped']} up to date, {failed} failed",
    )
    table.add_column("file", overflow="fold")
    several = any(result.point is not None for result in results)
    if several:
        table.add_column("point", justify="right")
    table.add_column("status")
    table.add_column("bpp", justify="right")
    table.add_column("PSNR dB", justify="right")
    table.add_column("time s", justify="right")
    table.add_column("reason", overflow="fold")
    for result in results:
        table.add_row(
            str(result.input_path),
            *([result.point or ""] if several else []),
            result.status,
            "" if result.bpp is None else f"{result.bpp:.4f}",
            "" if result.psnr_db is None else f"{result.psnr_db:.2f}",
            f"{result.seconds:.1f}" if result.status == "done" else "",
            result.error or "",
        )
    stdout_console().print(table)
