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
        measured = (
            ("loss {:.6g}", self.loss),
            ("psnr {:.3f} dB", self.psnr_db),
            ("{:.4f} bpp", self.bpp),
            ("lr {:.2e}", self.learning_rate),
            ("{:.1f} it/s", self.iterations_per_s),
            ("eta {:.0f} s", self.eta_s),
        )
        parts += [template.format(value) for template, value in measured if value is not None]
        if self.message:
            parts.append(self.message)
        return " | ".join(parts)


ProgressCallback = Callable[[ProgressEvent], None]


def ignore_progress(_event: ProgressEvent) -> None:
    """The default callback: do nothing."""
