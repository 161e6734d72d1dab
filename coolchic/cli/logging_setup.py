"""Logging configured once per process, by the CLI: console on stderr, optional verbose file.

Console level follows ``-v``/``-q`` (0 = INFO, 1+ = DEBUG, -1 = WARNING, -2 = ERROR). On a
terminal the console uses rich; otherwise plain one-line text, or one JSON object per line with
``--log-format json``. ``--log-file`` always records DEBUG, appended, opened on first use.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from typing import Literal

LogFormat = Literal["text", "json"]

_NO_LOCK = contextlib.nullcontext()
_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonLineFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["traceback"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def console_level(verbosity: int) -> int:
    if verbosity >= 1:
        return logging.DEBUG
    return {0: logging.INFO, -1: logging.WARNING}.get(verbosity, logging.ERROR)


def setup_logging(
    *, verbosity: int, log_format: LogFormat = "text", log_file: str | None = None
) -> None:
    """Install the handlers on the ``coolchic`` logger (idempotent: replaces earlier ones)."""
    root = logging.getLogger("coolchic")
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(logging.DEBUG)
    root.propagate = False

    console: logging.Handler
    if log_format == "json":
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(JsonLineFormatter())
    elif sys.stderr.isatty():
        from rich.logging import RichHandler

        from coolchic.cli.console import stderr_console

        console = RichHandler(console=stderr_console(), show_path=False, markup=False)
    else:
        console = logging.StreamHandler(sys.stderr)
        under_journald = "JOURNAL_STREAM" in os.environ or "INVOCATION_ID" in os.environ
        text = (
            "%(levelname)s %(message)s"
            if under_journald
            else ("%(asctime)s %(levelname)s %(message)s")
        )
        console.setFormatter(logging.Formatter(text))
    console.setLevel(console_level(verbosity))
    root.addHandler(console)

    if log_file:
        file_handler = logging.FileHandler(
            log_file, mode="a", encoding="utf-8", delay=True, errors="backslashreplace"
        )
        file_handler.setLevel(logging.DEBUG)
        file_handler.setFormatter(
            JsonLineFormatter()
            if log_format == "json"
            else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
        )
        root.addHandler(file_handler)


def reopen_log_files() -> int:
    """Close and reopen the ``--log-file`` (after logrotate moved it); returns how many.

    The next record creates the file again at its configured path.
    """
    reopened = 0
    for handler in logging.getLogger("coolchic").handlers:
        if isinstance(handler, logging.FileHandler):
            with handler.lock or _NO_LOCK:
                if handler.stream is not None:
                    handler.stream.close()
                    handler.stream = None  # type: ignore[assignment]  (FileHandler reopens)
            reopened += 1
    return reopened
