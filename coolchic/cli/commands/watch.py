"""``coolchic watch INBOX`` (alias ``daemon``): encode the files dropped into a folder.

The service lives in :mod:`coolchic.daemon`; this command builds its configuration, shows its
progress and owns the process-level concerns: the SIGINT/SIGTERM handlers (main thread only).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import click

from coolchic.cli.app import AppContext, cli
from coolchic.cli.commands.batch import DEFAULT_OUTPUT_NAME, build_settings, shared_options

logger = logging.getLogger(__name__)

#: What happens to an input once encoded (failed inputs always go to ``INBOX/failed/``).
ON_SUCCESS_CHOICES = ("keep", "move", "delete")


@cli.command()
@click.argument("inbox", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help=f"Folder for the .cool and .json files (default: INBOX/{DEFAULT_OUTPUT_NAME}).",
)
@shared_options
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of the journal and the lock, on a LOCAL disk (default: INBOX/.coolchic).",
)
@click.option(
    "--stable-seconds",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    help="A file is taken once its size and mtime stayed unchanged this long.",
)
@click.option(
    "--poll",
    "poll_s",
    type=click.FloatRange(min=0, min_open=True),
    envvar="COOLCHIC_WATCH_POLL",
    metavar="SECONDS",
    help="Look for changes every SECONDS instead of using native events (NFS, SMB, Docker "
    "Desktop bind mounts). Env: COOLCHIC_WATCH_POLL.",
)
@click.option(
    "--rescan-seconds",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    help="Full rescan of the inbox this often (catches events the observer lost).",
)
@click.option(
    "--on-success",
    type=click.Choice(ON_SUCCESS_CHOICES),
    default="move",
    show_default=True,
    help="What to do with an encoded input: leave it, move it to INBOX/done/, delete it.",
)
@click.option(
    "--max-attempts",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Attempts per file for transient errors (I/O, memory, a worker that died). A "
    "restart of the daemon does not use one.",
)
@click.option(
    "--max-interruptions",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Fail a file after the daemon ended abnormally this many times in a row while that "
    "file was the only one encoding (a restart loop); other restarts never count.",
)
@click.option(
    "--retry-seconds",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Wait before the first retry; doubled at each attempt, at most 30 minutes.",
)
@click.option(
    "--grace-seconds",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="On SIGTERM/SIGINT, how long the running encode may take to finish before it is "
    "stopped and re-queued.",
)
@click.pass_obj
def watch(
    app: AppContext,
    inbox: Path,
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
    state_dir: Path | None,
    stable_seconds: float,
    poll_s: float | None,
    rescan_seconds: float,
    on_success: str,
    max_attempts: int,
    max_interruptions: int,
    retry_seconds: float,
    grace_seconds: float,
) -> None:
    """Watch INBOX and encode every .yuv file (and .png with --include-png) dropped into it.

    Drop files by renaming them into INBOX (write "name.yuv.part" or into a sibling folder,
    then rename): hidden, *.part and *.tmp files are ignored until renamed, and a file is
    taken only once it stopped changing for --stable-seconds and holds a whole frame.
    Outputs go to --output; inputs move to INBOX/done/ (see --on-success) or INBOX/failed/
    beside <name>.error.json. Every file's state is journaled in --state-dir, so a restart
    resumes where the daemon stopped. SIGTERM or Ctrl-C: stop taking files, let the running
    encode finish (--grace-seconds), exit 0; a second Ctrl-C quits at once (exit 130).
    """
    from coolchic.cli.progress import MultiFileProgress
    from coolchic.daemon.service import STATE_DIR_NAME, WatchConfig, WatchService

    settings = build_settings(
        app, recipe=recipe, lmbda=lmbda, seed=seed, jobs=jobs, scheduler=scheduler
    )
    config = WatchConfig(
        inbox=inbox,
        output=output or inbox / DEFAULT_OUTPUT_NAME,
        state_dir=state_dir or inbox / STATE_DIR_NAME,
        settings=settings,
        stable_s=stable_seconds,
        poll_s=poll_s,
        rescan_s=rescan_seconds,
        on_success=on_success,  # type: ignore[arg-type]
        max_attempts=max_attempts,
        max_interruptions=max_interruptions,
        retry_s=retry_seconds,
        grace_s=grace_seconds,
        recursive=recursive,
        include_png=include_png,
        jobs=jobs,
        scheduler=scheduler,
        gpus_per_job=gpus_per_job,
        resource_timeout_s=resource_timeout_s,
    )
    stop = threading.Event()
    with (
        MultiFileProgress(total=None, quiet=app.verbosity < 0) as display,
        stop_on_signals(stop),
    ):
        WatchService(config, listener=display).run(stop)


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop``; a second one raises ``KeyboardInterrupt`` (exit 130).

    SIGHUP reopens the ``--log-file`` (for logrotate) and nothing else: the daemon goes on.

    Installed only in the main thread (the only one where Python delivers signals); the
    previous handlers come back on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        received.append(signum)
        if len(received) > 1:
            raise KeyboardInterrupt
        logger.warning(
            "%s received: no new files; the running encode may finish (signal again to quit "
            "at once)",
            signal.Signals(signum).name,
            extra={"event": "signal", "signal": signal.Signals(signum).name},
        )
        stop.set()

    def reopen(_signum: int, _frame: object) -> None:
        from coolchic.cli.logging_setup import reopen_log_files

        count = reopen_log_files()
        logger.info(
            "SIGHUP received: %s; the daemon goes on",
            "log file reopened" if count else "no --log-file to reopen",
            extra={"event": "signal", "signal": "SIGHUP"},
        )

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    if hasattr(signal, "SIGHUP"):  # POSIX: logrotate's "reopen your logs"
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, reopen)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _alias(command: click.Command, name: str) -> click.Command:
    alias = copy.copy(command)
    alias.name = name
    alias.short_help = f"Alias of {command.name}."
    return alias


cli.add_command(_alias(watch, "daemon"))
