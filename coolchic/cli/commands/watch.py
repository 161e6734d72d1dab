"""``coolchic watch INBOX`` (alias ``daemon``): encode the files dropped into a folder.

The service lives in :mod:`coolchic.daemon`; this command builds its configuration, shows its
progress and owns the process-level concerns: the SIGINT/SIGTERM handlers (main thread only).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from coolchic.cli.app import AppContext, cli
from coolchic.cli.options import (
    DEFAULT_OUTPUT_NAME,
    EncodeOptions,
    encode_options,
    state_dir_option,
)
from coolchic.daemon.config import ON_SUCCESS_CHOICES, STATE_DIR_NAME, WatchConfig

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

#: The ``--help`` of the daemon's tuning options.
_TUNING_HELP = {
    "--stable-seconds": "A file is taken once its size and mtime stayed unchanged this long.",
    "--rescan-seconds": "Full rescan of the inbox this often (catches events the observer lost).",
    "--on-success": "What to do with an encoded input: leave it, move it to INBOX/done/, "
    "delete it.",
    "--max-attempts": "Attempts per file for transient errors (I/O, memory, a worker that died). "
    "A restart of the daemon does not use one.",
    "--max-interruptions": "Fail a file after the daemon ended abnormally this many times in a "
    "row while that file was the only one encoding (a restart loop); other restarts never count.",
    "--retry-seconds": "Wait before the first retry; doubled at each attempt, at most 30 minutes.",
    "--grace-seconds": "On SIGTERM/SIGINT, how long the running encode may take to finish before "
    "it is stopped and re-queued.",
}


def _config_field(parameter: str) -> str:
    """The :class:`WatchConfig` field that a tuning option sets: the option's parameter name,
    with ``_seconds`` shortened to ``_s``."""
    if parameter.endswith("_seconds"):
        return parameter.removesuffix("_seconds") + "_s"
    return parameter


def _tuning_option(flag: str, value_type: click.ParamType) -> Callable[[F], F]:
    """``flag``, with the default of the :class:`WatchConfig` field it sets (shown in ``--help``):
    one home for each default, so that the command and the service cannot disagree."""
    field = _config_field(flag.removeprefix("--").replace("-", "_"))
    default = next(f.default for f in dataclasses.fields(WatchConfig) if f.name == field)
    return click.option(
        flag, type=value_type, default=default, show_default=True, help=_TUNING_HELP[flag]
    )


@cli.command()
@click.argument("inbox", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help=f"Folder for the .cool and .json files (default: INBOX/{DEFAULT_OUTPUT_NAME}).",
)
@encode_options
@state_dir_option("Folder of the journal and the lock, on a LOCAL disk (default: INBOX/.coolchic).")
@_tuning_option("--stable-seconds", click.FloatRange(min=0))
@click.option(
    "--poll",
    "poll_s",
    type=click.FloatRange(min=0, min_open=True),
    envvar="COOLCHIC_WATCH_POLL",
    metavar="SECONDS",
    help="Look for changes every SECONDS instead of using native events (NFS, SMB, Docker "
    "Desktop bind mounts). Env: COOLCHIC_WATCH_POLL.",
)
@_tuning_option("--rescan-seconds", click.FloatRange(min=0.1))
@_tuning_option("--on-success", click.Choice(ON_SUCCESS_CHOICES))
@_tuning_option("--max-attempts", click.IntRange(min=1))
@_tuning_option("--max-interruptions", click.IntRange(min=1))
@_tuning_option("--retry-seconds", click.FloatRange(min=0))
@_tuning_option("--grace-seconds", click.FloatRange(min=0))
@click.pass_obj
def watch(
    app: AppContext,
    inbox: Path,
    output: Path | None,
    options: EncodeOptions,
    state_dir: Path | None,
    **tuning: Any,
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
    from coolchic.daemon.service import WatchService

    config = WatchConfig(
        inbox=inbox,
        output=output or inbox / DEFAULT_OUTPUT_NAME,
        state_dir=state_dir or inbox / STATE_DIR_NAME,
        settings=options.settings(app),
        lmbdas=options.lmbdas,
        targets=options.targets(),
        **{_config_field(name): value for name, value in tuning.items()},
        recursive=options.recursive,
        include_png=options.include_png,
        jobs=options.jobs,
        scheduler=options.scheduler,
        gpus_per_job=options.gpus_per_job,
        resource_timeout_s=options.resource_timeout_s,
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
