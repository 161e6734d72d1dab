"""Inbox → journal: the paths that events and scans name become queued jobs once ready.

A path is followed by the readiness tracker until its size and mtime stay still; then it is
queued, unless the journal knows that version of the file already.
"""

from __future__ import annotations

import logging
import os
import queue
import stat
from pathlib import Path

from coolchic.daemon.context import ServiceContext, logger, printable_name
from coolchic.daemon.journal import TERMINAL_STATES, JobRow
from coolchic.daemon.observer import RESCAN
from coolchic.jobs.inputs import find_inputs, is_ignored_name, is_input_name, refusal_reason


class InboxDiscovery(ServiceContext):
    """Finds the inbox's inputs and queues them in the journal."""

    def _take_events(self) -> bool:
        """Follow the paths that events named; True if a folder changed (rescan)."""
        rescan = False
        while True:
            try:
                path = self._events.get_nowait()
            except queue.Empty:
                return rescan
            if path == RESCAN:
                rescan = True
            elif self._is_candidate(path):
                self.tracker.touch(path)

    def _is_candidate(self, path: Path) -> bool:
        try:
            relative = path.relative_to(self.inbox)
        except ValueError:
            return False
        if not relative.parts or (len(relative.parts) > 1 and not self.config.recursive):
            return False
        if any(is_ignored_name(part) for part in relative.parts[:-1]):
            return False
        if any(path.is_relative_to(folder) for folder in self._excluded):
            return False
        return is_input_name(relative.name, include_png=self.config.include_png)

    def _scan(self) -> None:
        """Follow every input in the inbox that the journal does not know yet."""
        found = find_inputs(
            self.inbox,
            recursive=self.config.recursive,
            include_png=self.config.include_png,
            exclude=self._excluded,
        )
        for item in found:
            if item.path in self.tracker:
                continue
            try:
                info = os.stat(item.path)
            except OSError:
                continue
            if not stat.S_ISREG(info.st_mode):
                self._ignore_once(item.path, item.refused or "not a regular file")
                continue
            row = self.journal.find(item.path, info.st_size, info.st_mtime_ns)
            if row is None:
                self.tracker.observe(item.path)
            elif row.state in TERMINAL_STATES:
                self._seen_again(row)

    def _ignore_once(self, path: Path, reason: str) -> None:
        """Say once why an entry with an input's name is left where it is (a FIFO, a folder)."""
        if path in self._ignored:
            return
        self._ignored.add(path)
        name = printable_name(os.path.relpath(path, self.inbox))
        logger.warning(
            "ignored %s: %s; left in the inbox",
            name,
            reason,
            extra={"event": "ignored", "file": name},
        )

    def _admit(self, path: Path) -> None:
        """A ready file: queue it, unless the journal knows this version already."""
        try:
            info = os.stat(path)
        except OSError:
            return
        known = self.journal.find(path, info.st_size, info.st_mtime_ns)
        if known is not None:
            if known.state in TERMINAL_STATES:
                self._seen_again(known)
            return
        row = self.journal.enqueue(path, info.st_size, info.st_mtime_ns, info.st_ino)
        self._log(logging.INFO, "queued", row, f"{info.st_size} bytes")
        refusal = refusal_reason(path, self.inbox)
        if refusal is not None:
            self._finish_failed(row, f"refused: {refusal}", "permanent")

    def _seen_again(self, row: JobRow) -> None:
        """A finished file version is in the inbox: finish its disposal, or queue it again.

        If the journal says its input was moved away or deleted, someone brought it back
        (``mv failed/x.yuv .`` keeps size and mtime): that is a request to run it again.
        Otherwise a crash came between the journal and the move: do the move now.
        """
        if row.disposed_to is not None and row.disposed_to != "kept":
            self.journal.revive(row.id)
            self._log(logging.INFO, "queued", row, "brought back into the inbox; queued again")
            return
        self._dispose(row)
