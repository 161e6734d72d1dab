"""``coolchic batch PATH...``: encode every input of a folder, a report per file, a summary.

Also home of the options that ``batch`` and ``watch`` share (:func:`encode_settings_options`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from coolchic.cli.app import AppContext, cli
from coolchic.cli.commands.encode import RECIPE_CHOICES
from coolchic.cli.console import stdout_console
from coolchic.cli.exit_codes import BATCH_FAILURES
from coolchic.executors import DEFAULT_RESOURCE_TIMEOUT_S, DISTRIBUTED_INSTALL_HINT

if TYPE_CHECKING:
    from coolchic.executors import Executor
    from coolchic.jobs import EncodeSettings, InputFile, JobId, JobResult
    from coolchic.train.progress import ProgressEvent

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

#: Name of the default output folder, inside the (first) input folder.
DEFAULT_OUTPUT_NAME = "coolchic-out"


def shared_options(function: F) -> F:
    """``--recipe``, ``--lmbda``, ``--seed``, ``--recursive``, ``--include-png``, ``--jobs``,
    and where the encodes run: ``--scheduler``, ``--gpus-per-job``, ``--resource-timeout``."""
    options = [
        click.option(
            "--recipe", type=click.Choice(RECIPE_CHOICES), default="fast", show_default=True
        ),
        click.option(
            "--lmbda",
            type=click.FloatRange(min=0, min_open=True),
            default=1e-3,
            show_default=True,
            help="Rate-distortion trade-off λ: larger means smaller files.",
        ),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("-r", "--recursive", is_flag=True, help="Also take inputs in sub-folders."),
        click.option("--include-png", is_flag=True, help="Take .png images as well as .yuv files."),
        click.option(
            "-j",
            "--jobs",
            type=click.IntRange(min=1),
            help="Encodes run at once, each in its own process (threads: cores / jobs). "
            "Default: 1; with --scheduler, as many as the cluster has worker threads "
            "(--scheduler local: the number of local workers, default 1).",
        ),
        click.option(
            "--scheduler",
            metavar="ADDRESS",
            help="Run the encodes on a Dask distributed cluster: tcp://HOST:8786, or 'local' "
            "for a cluster of --jobs worker processes on this machine. Needs "
            f"{DISTRIBUTED_INSTALL_HINT}.",
        ),
        click.option(
            "--gpus-per-job",
            type=click.FloatRange(min=0),
            default=0,
            help="With --scheduler: the GPU resource each encode needs (workers declare it "
            "with 'dask worker ... --resources GPU=1').",
        ),
        click.option(
            "--resource-timeout",
            "resource_timeout_s",
            type=click.FloatRange(min=0),
            default=DEFAULT_RESOURCE_TIMEOUT_S,
            show_default=True,
            metavar="SECONDS",
            help="With --scheduler: an encode that no worker can take (none with the "
            "resources asked for) fails after this long instead of waiting forever.",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def build_settings(
    app: AppContext,
    *,
    recipe: str,
    lmbda: float,
    seed: int,
    jobs: int | None,
    scheduler: str | None = None,
) -> EncodeSettings:
    """The encode settings, with torch threads per job set explicitly: ``--threads``, else
    this machine's cores / jobs (also for ``--scheduler local``, whose workers are here); on a
    remote Dask cluster each worker shares out its own cores among its task threads."""
    from coolchic.jobs import EncodeSettings, default_threads

    remote = scheduler is not None and scheduler != "local"
    local_threads = None if remote else default_threads(jobs or 1)
    return EncodeSettings(
        recipe=recipe,
        lmbda=lmbda,
        seed=seed,
        device=app.device,
        threads=app.threads or local_threads,
        memory_limit=app.memory_limit,
    )


def open_executor(
    *, scheduler: str | None, jobs: int | None, gpus_per_job: float, resource_timeout_s: float
) -> Executor:
    """The executor of ``--scheduler``; a missing extra or an unreachable scheduler is a
    one-line error (exit 1)."""
    from coolchic.executors import create_executor

    return create_executor(
        scheduler, jobs=jobs, gpus_per_job=gpus_per_job, resource_timeout_s=resource_timeout_s
    )


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help=f"Folder for the .cool and .json files (default: DIR/{DEFAULT_OUTPUT_NAME} when one "
    "folder is given).",
)
@shared_options
@click.option("--force", is_flag=True, help="Re-encode even when an up-to-date output exists.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line per file on stdout.")
@click.pass_context
def batch(
    ctx: click.Context,
    paths: tuple[Path, ...],
    output: Path | None,
    recipe: str,
    lmbda: float,
    seed: int,
    recursive: bool,
    include_png: bool,
    jobs: int | None,
    scheduler: str | None,
    gpus_per_job: float,
    resource_timeout_s: float,
    force: bool,
    as_json: bool,
) -> None:
    """Encode every .yuv file (and .png with --include-png) of the folders or files PATHS.

    Each input gets <stem>.cool and <stem>.json (the report) in the output folder, mirroring
    sub-folders. An input whose up-to-date output exists (same content, same settings) is
    skipped. A failing file never stops the batch. Exit code 0 when every file succeeded or was
    skipped, 3 when some failed.
    """
    from coolchic.cli.progress import MultiFileProgress
    from coolchic.jobs import plan_batch, run_batch
    from coolchic.resources import memory_budget

    app: AppContext = ctx.obj
    folders = [p for p in paths if p.is_dir()]
    if output is None:
        if len(paths) != 1 or not folders:
            raise click.UsageError("give --output when PATHS is not exactly one folder")
        output = folders[0] / DEFAULT_OUTPUT_NAME
    settings = build_settings(
        app, recipe=recipe, lmbda=lmbda, seed=seed, jobs=jobs, scheduler=scheduler
    )
    inputs = collect_inputs(paths, output, recursive=recursive, include_png=include_png)
    if not inputs:
        kinds = ".yuv or .png" if include_png else ".yuv"
        logger.warning("no %s input found in %s", kinds, ", ".join(map(str, paths)))
        return
    logger.info(
        "%d inputs, recipe %s, lmbda %g, %s at a time with %s threads each %s, outputs in %s",
        len(inputs),
        recipe,
        lmbda,
        jobs or ("as many as the cluster takes" if scheduler else 1),
        settings.threads or "the worker's share of",
        f"on the Dask scheduler {scheduler}" if scheduler else "on this machine",
        output,
    )
    plan = plan_batch(inputs, output, settings, force=force)
    with (
        open_executor(
            scheduler=scheduler,
            jobs=jobs,
            gpus_per_job=gpus_per_job,
            resource_timeout_s=resource_timeout_s,
        ) as executor,
        MultiFileProgress(total=len(inputs), quiet=app.verbosity < 0) as display,
    ):
        listener = _JsonLines(display) if as_json else display
        memory = None if scheduler else memory_budget(settings.memory_limit)
        results = run_batch(plan, executor, listener=listener, memory=memory)
    if not as_json:
        render_summary(results, settings)
    if any(result.status == "failed" for result in results):
        ctx.exit(BATCH_FAILURES)


def collect_inputs(paths: tuple[Path, ...], output: Path, *, recursive: bool, include_png: bool):
    """The inputs in PATHS: folders are searched, files are taken as given (deduplicated)."""
    from coolchic.jobs import InputFile, find_inputs, refusal_reason

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


def render_summary(results: list[JobResult], settings: EncodeSettings) -> None:
    """The summary table on stdout: file, status, bpp, PSNR, time, reason of failure."""
    from rich.table import Table

    counts = {status: sum(r.status == status for r in results) for status in ("done", "skipped")}
    failed = len(results) - counts["done"] - counts["skipped"]
    table = Table(
        title=f"coolchic batch: recipe {settings.recipe}, lmbda {settings.lmbda:g}",
        caption=f"{counts['done']} encoded, {counts['skipped']} up to date, {failed} failed",
    )
    table.add_column("file", overflow="fold")
    table.add_column("status")
    table.add_column("bpp", justify="right")
    table.add_column("PSNR dB", justify="right")
    table.add_column("time s", justify="right")
    table.add_column("reason", overflow="fold")
    for result in results:
        table.add_row(
            str(result.input_path),
            result.status,
            "" if result.bpp is None else f"{result.bpp:.4f}",
            "" if result.psnr_db is None else f"{result.psnr_db:.2f}",
            f"{result.seconds:.1f}" if result.status == "done" else "",
            result.error or "",
        )
    stdout_console().print(table)
