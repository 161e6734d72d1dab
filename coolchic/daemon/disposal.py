"""What becomes of an input once its job ended: kept, moved to ``done/``, deleted, or moved to
``failed/`` beside its ``<name>.error.json``.

Every step is idempotent: a restart that finds a finished job's input still in the inbox
applies the policy again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

from coolchic import __version__
from coolchic.daemon.context import ServiceContext
from coolchic.daemon.journal import JobRow
from coolchic.errors import InputError
from coolchic.io.files import fsync_directory
from coolchic.jobs.inputs import NAME_MAX_BYTES
from coolchic.jobs.run import write_json_atomic


class InputDisposal(ServiceContext):
    """Applies the ``--on-success`` policy, and moves failed inputs to ``failed/``."""

    def _dispose(self, row: JobRow) -> None:
        """Apply the input policy of a finished job (again: this is idempotent)."""
        if row.state == "failed":
            self._dispose_failed(row)
        elif row.state == "done":
            self._dispose_done(row)

    def _still_there(self, row: JobRow) -> bool:
        try:
            info = os.stat(row.path)
        except OSError:
            return False
        return (info.st_size, info.st_mtime_ns) == (row.size, row.mtime_ns)

    def _destination(self, folder: Path, path: Path) -> Path:
        target = folder / path.relative_to(self.inbox)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.parent.resolve().is_relative_to(folder):
            raise InputError(f"{target} would lie outside {folder}")
        return target

    def _dispose_done(self, row: JobRow) -> None:
        policy = self.config.on_success
        if policy == "keep":
            if row.disposed_to is None:
                self.journal.set_disposed(row.id, "kept")
            return
        if not self._still_there(row):
            return
        path = Path(row.path)
        try:
            if policy == "delete":
                path.unlink()
                where = "deleted"
            else:
                target = self._destination(self.done_dir, path)
                os.replace(path, target)
                fsync_directory(target.parent)
                where = str(target)
        except (OSError, InputError) as error:
            self._log(logging.ERROR, "dispose_failed", row, f"cannot {policy} the input: {error}")
            return
        self.journal.set_disposed(row.id, where)

    def _dispose_failed(self, row: JobRow, *, detail: str | None = None) -> None:
        """Move the input to ``failed/`` beside ``<name>.error.json`` (written first)."""
        if not self._still_there(row):
            return
        path = Path(row.path)
        try:
            target = self._destination(self.failed_dir, path)
            write_json_atomic(
                error_report_path(target),
                {
                    "input": str(path),
                    "moved_to": str(target),
                    "error": row.error,
                    "error_kind": row.error_kind,
                    "attempts": row.attempts,
                    "job": row.id,
                    "size": row.size,
                    "failed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "settings": self.config.settings.as_dict(),
                    "version": __version__,
                    "detail": detail,
                },
            )
            os.replace(path, target)
            fsync_directory(target.parent)
        except (OSError, InputError) as error:
            self._log(logging.ERROR, "dispose_failed", row, f"cannot move the input: {error}")
            return
        self.journal.set_disposed(row.id, str(target))


def error_report_path(failed_input: Path) -> Path:
    """``<name>.error.json`` beside a failed input, or ``<hash>.error.json`` for a long name.

    Its temporary name (see :func:`~coolchic.io.files.atomic_write_bytes`) must fit in the file
    system's 255 bytes too; the report's ``moved_to`` names the input either way.
    """
    name = failed_input.name + ".error.json"
    if len(os.fsencode(name)) + len("..XXXXXXXX.tmp") <= NAME_MAX_BYTES:
        return failed_input.with_name(name)
    digest = hashlib.sha256(os.fsencode(failed_input.name)).hexdigest()[:16]
    return failed_input.with_name(f"{digest}.error.json")
