"""The progress protocol between the codec core and whoever shows progress (CLI, daemon).

The trainer calls ``progress(event)`` at validation points only (never per iteration), so a
callback may log, render a rich bar or send the event to another process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

EventKind = Literal["start", "progress", "phase_end", "warning", "done"]

#: The phase of the "start" event that announces the expected time (``eta_s``) before training.
FORECAST_PHASE = "forecast"


@dataclass(frozen=True)
class ProgressEvent:
    """A snapshot of an encode in progress.

    ``iteration``/``total_iterations`` count over the whole recipe (warm-up included), so
    ``eta_s`` is an estimate for the whole training, not only the current phase.
    """

    kind: EventKind
    stage: str
    phase: str
    iteration: int
    total_iterations: int
    loss: float | None = None
    psnr_db: float | None = None
    bpp: float | None = None
    learning_rate: float | None = None
    iterations_per_s: float | None = None
    eta_s: float | None = None
    message: str = ""

    @property
    def fraction(self) -> float:
        return min(1.0, self.iteration / max(1, self.total_iterations))

    def describe(self) -> str:
        """One plain-text line for logs."""
        parts = [f"{self.stage}/{self.phase}", f"it {self.iteration}/{self.total_iterations}"]
        if self.loss is not None:
            parts.append(f"loss {self.loss:.6g}")
        if self.psnr_db is not None:
            parts.append(f"psnr {self.psnr_db:.3f} dB")
        if self.bpp is not None:
            parts.append(f"{self.bpp:.4f} bpp")
        if self.learning_rate is not None:
            parts.append(f"lr {self.learning_rate:.2e}")
        if self.iterations_per_s is not None:
            parts.append(f"{self.iterations_per_s:.1f} it/s")
        if self.eta_s is not None:
            parts.append(f"eta {self.eta_s:.0f} s")
        if self.message:
            parts.append(self.message)
        return " | ".join(parts)


ProgressCallback = Callable[[ProgressEvent], None]


def ignore_progress(_event: ProgressEvent) -> None:
    """The default callback: do nothing."""
