"""Checkpoints of a training run, so that an interrupted encode continues where it stopped.

A checkpoint holds everything the rest of the run depends on: the model, the best state so far
and its evaluation, the optimiser's moments, the position in the recipe, the counters and the
random generators. Restoring it and going on computes exactly what the uninterrupted run would
have computed, so a seeded encode that is killed and resumed writes the same bytes.

A checkpoint is keyed: the caller derives the key from everything that shapes the encode (the
frame's samples, the settings, the package version and this file's format). A file with another
key, another format, or that cannot be read is set aside (renamed ``*.rejected``) with a
warning, and the encode starts over: a checkpoint never makes a job fail.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from coolchic.io.files import fsync_directory

logger = logging.getLogger(__name__)

#: Bumped whenever :class:`TrainingState` changes meaning; older files are set aside.
CHECKPOINT_FORMAT = 3
#: Wall time between two checkpoints by default (a phase change always writes one).
DEFAULT_INTERVAL_S = 30.0
#: Overrides the interval (seconds) for every encode of the process, e.g. in tests.
INTERVAL_ENV = "COOLCHIC_CHECKPOINT_SECONDS"


@dataclass
class TrainingState:
    """Where a run stands, between two iterations of a main phase.

    ``phase_index`` is the recipe phase to continue (``len(phases)`` once all are done) and
    ``iteration`` the iterations already done in it; ``optimizer`` is None at a phase start.
    """

    seed: int
    phase_index: int
    iteration: int
    since_best: int
    iterations_done: int
    recoveries: int
    lr_scale: float
    model: dict[str, Tensor]
    best_state: dict[str, Tensor]
    best: tuple[float, float, float]  # loss, mse, bpp
    optimizer: dict[str, Any] | None
    generator: Tensor
    torch_rng: Tensor
    #: The λ trained at: rate control may have moved it from the encode's first λ.
    lmbda: float


class Checkpoint:
    """One run's checkpoint file: written atomically, read back only under the same key.

    Args:
        path: the file (its folder is created when needed).
        key: what the encode is; a file saved under another key is never used.
        interval_s: least wall time between two periodic saves (default: the environment's
            :data:`INTERVAL_ENV`, else :data:`DEFAULT_INTERVAL_S`).
        clock: monotonic seconds.
    """

    def __init__(
        self,
        path: str | Path,
        key: str,
        *,
        interval_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.key = key
        if interval_s is None:
            interval_s = float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL_S))
        self.interval_s = interval_s
        self.clock = clock
        self._last_save = clock()
        self.saves = 0
        self.disabled = False

    def due(self) -> bool:
        """Whether the periodic interval has passed since the last save (or the start)."""
        return self.clock() - self._last_save >= self.interval_s

    def load(self) -> TrainingState | None:
        """The saved state, or None when there is none or it cannot be used (set aside)."""
        if not self.path.exists():
            return None
        try:
            payload = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as error:  # truncated, corrupt, not ours: never fail the job
            self._reject(f"cannot be read ({type(error).__name__}: {error})")
            return None
        if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
            found = payload.get("format") if isinstance(payload, dict) else None
            self._reject(f"format {found!r}, this version writes {CHECKPOINT_FORMAT}")
            return None
        if payload.get("key") != self.key:
            self._reject("made for another input, other settings or another version")
            return None
        try:
            saved = payload["state"]
            return TrainingState(**{f.name: saved[f.name] for f in fields(TrainingState)})
        except (KeyError, TypeError) as error:
            self._reject(f"incomplete ({error})")
            return None

    def save(self, state: TrainingState) -> None:
        """Write ``state`` atomically: a temporary file, fsync, rename over the old one.

        A checkpoint that cannot be written (full disk, a folder this machine cannot create)
        is not a reason to stop the encode: a warning, and no more checkpoints for this run.
        """
        if self.disabled:
            return
        try:
            self._write(state)
        except OSError as error:
            self.disabled = True
            logger.warning(
                "cannot write the checkpoint %s (%s): the encode goes on without checkpoints",
                self.path,
                error.strerror or error,
            )
            return
        self._last_save = self.clock()
        self.saves += 1

    def _write(self, state: TrainingState) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        values = {f.name: getattr(state, f.name) for f in fields(state)}  # no deep copies
        payload = {"format": CHECKPOINT_FORMAT, "key": self.key, "state": values}
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
        )
        try:
            with os.fdopen(fd, "wb") as handle:
                torch.save(payload, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            raise
        fsync_directory(self.path.parent)

    def remove(self) -> None:
        """Delete the checkpoint (its stream is written)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _reject(self, reason: str) -> None:
        aside = self.path.with_name(self.path.name + ".rejected")
        with contextlib.suppress(OSError):
            os.replace(self.path, aside)
        logger.warning(
            "checkpoint %s %s: set aside as %s; the encode starts over", self.path, reason, aside
        )
