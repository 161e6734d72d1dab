"""Rate control: find the λ that gives a target PSNR or a target rate.

No overfitted codec can predict its rate or quality before it has trained, so a targeted
encode searches λ with whole trials and reuses their work:

1. the first trial is a full encode at a λ predicted from the target alone
   (:meth:`RateTarget.first_lmbda`);
2. each later trial continues the trained model of the nearest earlier trial at a new λ,
   replaying only the end of the main phase (:func:`coolchic.train.recipes.continuation`);
3. each trial writes and decodes its stream, so the value it reports is the stream's own;
4. the search stops at the first trial within the tolerance, when the time budget is spent, or
   when the target lies beyond the λ range (:class:`TargetUnreachable`).

The next λ comes from the measured trials in log λ: a secant inside the bracket once the target
is bracketed, else a step along the slope measured so far (or a prior slope after one trial).
This module is plain Python: the codec (:func:`coolchic.codec.encode_to_target`) supplies the
trials, the tests a fake encoder.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from coolchic.defaults import parse_numbers
from coolchic.errors import EncodingError

TargetMetric = Literal["psnr", "bpp"]

#: The λ the search may use. Beyond them the codec leaves its useful range: below 1e-5 the
#: rate grows without a visible PSNR gain on 8-bit frames, above 0.1 the frame is a blur.
SEARCH_LMBDA_RANGE = (1e-5, 1e-1)

#: Close enough: the search stops at the first trial this near the target.
PSNR_TOLERANCE_DB = 0.1
BPP_TOLERANCE = 0.03

#: How the error moves per decade of λ before two trials measure it: about -6 dB of PSNR and
#: -0.6 decades of rate per decade of λ for ``fast`` on photographs at 192x128 to 416x240
#: (BENCHMARKS.md, RD runs with λ 4e-4 … 2e-2).
PRIOR_SLOPE = {"psnr": -6.0, "bpp": -0.6}

#: A measured slope is trusted within this factor of the prior (noise can flatten a secant).
SLOPE_BOUNDS = (0.3, 3.0)

#: The largest step in log10 λ from one trial to the next when the target is not bracketed.
MAX_STEP_DECADES = 0.7

#: The smallest file a stream can be: its fixed header (bits), whatever λ.
MIN_STREAM_BITS = 8 * 30

#: A continuation trial (:func:`coolchic.train.recipes.continuation`, 25 % of the main phase)
#: moves the PSNR and the rate 0.25 to 0.4 times as far as a fresh encode at the same λ
#: would on kodim15 192x128 (λ 1e-3 ↔ 2.5e-3), but near a threshold (a latent grid that
#: starts to cost bits) it jumps. The search takes the low end, so that its first step after
#: the first trial tends to cross the target and bracket it: from a bracket, the secant
#: converges whatever the shape; a timid step that stays on one side wastes a trial.
CONTINUATION_RESPONSIVENESS = 0.3

#: The online controller of the first trial (:class:`OnlineController`) moves λ until this
#: share of the main phase is done; later the model could no longer follow.
FREEZE_AT = 0.7
#: Share of the projected error that one update (one evaluation, 100 iterations) corrects,
#: and the largest move of one update, in decades of λ.
CONTROL_GAIN = 0.25
MAX_UPDATE_DECADES = 0.1
#: The first trial gives up once λ has sat at an end of the search range from this share of
#: the main phase on and the projected value still misses by this many tolerances: the
#: target is out of reach, and the rest of the encode would not change that.
GIVE_UP_AT = 0.3
GIVE_UP_TOLERANCES = 10
#: What the rest of a ``fast`` main phase still adds after a share ``f`` of it:
#: PSNR +0.6·(1-f)² dB, latent rate ×10^(-0.25·(1-f)²) (decoder-view evaluations against the
#: final stream: kodim15 192x128 at λ 1e-3 and 4e-3, two 416x240 photographs; BENCHMARKS.md).
REMAINING_PSNR_DB = 0.6
REMAINING_RATE_DECADES = -0.25

#: Anchor of the prior: λ = 1e-3 gave about 35.5 dB and 0.45 bpp with ``fast``.
_PRIOR_ANCHOR = (1e-3, 35.5, 0.45)


class TargetUnreachable(EncodingError):
    """No λ in the search range reaches the target (the message says what the limit gave)."""


@dataclass(frozen=True)
class RateTarget:
    """A quality (``psnr``, dB, the frame's own PSNR: 4:2:0 or RGB) or a rate (``bpp``) to hit."""

    metric: TargetMetric
    value: float

    def __post_init__(self) -> None:
        if self.metric not in PRIOR_SLOPE:
            raise ValueError(f"unknown target metric {self.metric!r}: expected psnr or bpp")
        if not (math.isfinite(self.value) and self.value > 0):
            raise ValueError(f"a {self.metric} target must be a number > 0, found {self.value}")

    @property
    def tolerance(self) -> float:
        """In the units of :meth:`error`: dB for PSNR, decades of rate for bpp."""
        if self.metric == "psnr":
            return PSNR_TOLERANCE_DB
        return math.log10(1 + BPP_TOLERANCE)

    def describe(self) -> str:
        return f"{self.value:g} dB" if self.metric == "psnr" else f"{self.value:g} bpp"

    @property
    def tag(self) -> str:
        """Names the outputs of this target: ``p36``, ``b0.25``."""
        return f"{'p' if self.metric == 'psnr' else 'b'}{self.value:g}"

    def achieved(self, psnr_db: float, bpp: float) -> float:
        return psnr_db if self.metric == "psnr" else bpp

    def error(self, psnr_db: float, bpp: float) -> float:
        """Signed distance to the target, decreasing as λ grows: positive means λ too small."""
        if self.metric == "psnr":
            return psnr_db - self.value
        return math.log10(bpp / self.value)

    def first_lmbda(self) -> float:
        """The λ of the first trial, from the target alone (clamped to the search range)."""
        lmbda, psnr, bpp = _PRIOR_ANCHOR
        if self.metric == "psnr":
            decades = (psnr - self.value) / -PRIOR_SLOPE["psnr"]
        else:
            decades = math.log10(bpp / self.value) / -PRIOR_SLOPE["bpp"]
        return _clamp_lmbda(lmbda * 10**decades)

    def check_reachable(self, n_pixels: int) -> None:
        """Refuse at once what no trial can reach: fewer bits than the stream's header.

        Raises:
            TargetUnreachable: the target rate is below one header per frame.
        """
        if self.metric == "bpp" and self.value * n_pixels < MIN_STREAM_BITS:
            raise TargetUnreachable(
                f"target {self.describe()} is out of reach: {self.value * n_pixels:.0f} bits "
                f"for the frame, and a stream's header alone takes {MIN_STREAM_BITS}"
            )


def parse_targets(metric: TargetMetric, text: str) -> tuple[RateTarget, ...]:
    """``"34,36"`` → two PSNR targets; each checked, none twice.

    Raises:
        ValueError: an entry is not a number, not > 0, or repeats another.
    """
    targets: list[RateTarget] = []
    for entry, value in parse_numbers(text):
        target = RateTarget(metric, value)
        if target.tag in (t.tag for t in targets):
            raise ValueError(f"target {entry} is given twice")
        targets.append(target)
    return tuple(targets)


@dataclass(frozen=True)
class Trial:
    """One encode of the search: its λ, what its stream measured, what it cost."""

    lmbda: float
    psnr_db: float
    bpp: float
    seconds: float
    kind: str = "full"
    iterations: int = 0

    def as_dict(self) -> dict[str, float | str]:
        return {
            "lmbda": self.lmbda,
            "bpp": round(self.bpp, 6),
            "psnr_db": round(self.psnr_db, 4),
            "seconds": round(self.seconds, 3),
            "kind": self.kind,
            "iterations": self.iterations,
        }


@dataclass
class LambdaSearch:
    """The trials so far and the λ to try next."""

    target: RateTarget
    trials: list[Trial] = field(default_factory=list)
    #: How far the next trials move per λ against a fresh encode (their slope is the
    #: prior's times this until two trials measure it).
    responsiveness: float = 1.0

    def error(self, trial: Trial) -> float:
        return self.target.error(trial.psnr_db, trial.bpp)

    def met(self, trial: Trial) -> bool:
        return abs(self.error(trial)) <= self.target.tolerance

    def closest(self) -> Trial:
        """The trial nearest the target (the one to keep when none met it)."""
        return min(self.trials, key=lambda trial: abs(self.error(trial)))

    def next_lmbda(self) -> float:
        """The λ to try after the trials so far.

        Raises:
            TargetUnreachable: the target needs a λ beyond the search range, and a trial at
                that end of the range already missed it.
        """
        points = sorted((math.log10(t.lmbda), self.error(t)) for t in self.trials)
        too_good = [p for p in points if p[1] > 0]  # λ too small
        too_poor = [p for p in points if p[1] < 0]  # λ too large
        if too_good and too_poor:
            (x0, y0), (x1, y1) = too_good[-1], too_poor[0]
            if x1 > x0:
                x = x0 + y0 * (x1 - x0) / (y0 - y1)
                margin = 0.1 * (x1 - x0)
                return 10 ** min(max(x, x0 + margin), x1 - margin)
            # Noise made the trials non-monotone in λ: split the nearest on either side.
            good = min(too_good, key=lambda p: abs(p[1]))
            poor = min(too_poor, key=lambda p: abs(p[1]))
            return 10 ** ((good[0] + poor[0]) / 2)
        # One side only: step on from the trial furthest toward the target, so that the new λ
        # lies beyond every trial (noise cannot send the search back to a λ it tried).
        side = too_good or too_poor
        base = side[-1] if too_good else side[0]
        step = -base[1] / self._slope(side)
        step = max(-MAX_STEP_DECADES, min(MAX_STEP_DECADES, step))
        lmbda = _clamp_lmbda(10 ** (base[0] + step))
        at_limit = [t for t in self.trials if math.isclose(t.lmbda, lmbda, rel_tol=1e-9)]
        if at_limit:
            limit = at_limit[0]
            raise TargetUnreachable(
                f"target {self.target.describe()} is out of reach: at λ = {limit.lmbda:g}, the "
                f"end of the range searched, the encode gives {limit.psnr_db:.2f} dB at "
                f"{limit.bpp:.4f} bpp"
            )
        return lmbda

    def _slope(self, side: list[tuple[float, float]]) -> float:
        """Error per decade of λ: the secant of the two trials nearest the target on one
        side, kept within :data:`SLOPE_BOUNDS` of the prior; the prior with fewer trials."""
        prior = PRIOR_SLOPE[self.target.metric] * self.responsiveness
        near = sorted(side, key=lambda p: abs(p[1]))[:2]
        if len(near) < 2 or math.isclose(near[0][0], near[1][0]):
            return prior
        (xa, ya), (xb, yb) = near
        measured = (ya - yb) / (xa - xb)
        low, high = SLOPE_BOUNDS
        return -min(max(-measured, -prior * low), -prior * high)  # bound the magnitude


def _clamp_lmbda(lmbda: float) -> float:
    low, high = SEARCH_LMBDA_RANGE
    return min(max(lmbda, low), high)


@dataclass
class OnlineController:
    """Moves λ toward the target during the first trial's main phase.

    At each evaluation it projects the final value from the current one (what the rest of the
    phase usually adds, and for a rate the networks' and header's bits at λ, ``overhead_bpp``)
    and
    corrects a share of the projected error along the prior slope; after :data:`FREEZE_AT` of
    the phase λ stays. Later trials correct what is left.
    """

    target: RateTarget
    overhead_bpp: Callable[[float], float] = lambda _lmbda: 0.0
    history: list[tuple[float, float]] = field(default_factory=list)  # (fraction, λ)

    def projected_error(
        self, fraction: float, psnr_db: float, latent_bpp: float, lmbda: float
    ) -> float:
        remaining = (1 - fraction) ** 2
        psnr = psnr_db + REMAINING_PSNR_DB * remaining
        bpp = latent_bpp * 10 ** (REMAINING_RATE_DECADES * remaining) + self.overhead_bpp(lmbda)
        return self.target.error(psnr, bpp)

    def update(self, fraction: float, psnr_db: float, latent_bpp: float, lmbda: float) -> float:
        """The λ to train at from now on.

        Raises:
            TargetUnreachable: λ is pinned at an end of the range and far from the target.
        """
        if fraction > FREEZE_AT or not (math.isfinite(psnr_db) and latent_bpp > 0):
            return lmbda
        error = self.projected_error(fraction, psnr_db, latent_bpp, lmbda)
        self._give_up_if_pinned(fraction, error, lmbda, psnr_db)
        step = -CONTROL_GAIN * error / PRIOR_SLOPE[self.target.metric]
        step = max(-MAX_UPDATE_DECADES, min(MAX_UPDATE_DECADES, step))
        lmbda = _clamp_lmbda(lmbda * 10**step)
        self.history.append((fraction, lmbda))
        return lmbda

    def _give_up_if_pinned(self, fraction: float, error: float, lmbda: float, psnr: float) -> None:
        low, high = SEARCH_LMBDA_RANGE
        pinned = (lmbda <= low and error < 0) or (lmbda >= high and error > 0)
        if fraction < GIVE_UP_AT or not pinned:
            return
        if abs(error) > GIVE_UP_TOLERANCES * self.target.tolerance:
            heading = (
                f"{self.target.value + error:.2f} dB"
                if self.target.metric == "psnr"
                else f"{self.target.value * 10**error:.4f} bpp"
            )
            raise TargetUnreachable(
                f"target {self.target.describe()} is out of reach: at λ = {lmbda:g}, the end of "
                f"the range searched, the encode is heading for about {heading}"
            )


@dataclass(frozen=True)
class SearchResult:
    """The trial kept, every trial in order, and whether the kept one met the target."""

    kept: int
    trials: tuple[Trial, ...]
    met: bool


def search_lmbda(
    target: RateTarget,
    run_trial: Callable[[float], Trial],
    *,
    first_lmbda: float | None = None,
    may_continue: Callable[[list[Trial], float], bool] = lambda _trials, _lmbda: True,
    responsiveness: float = 1.0,
) -> SearchResult:
    """Run trials until one meets ``target``; return which to keep.

    ``run_trial(λ)`` encodes at λ (or, in the first trial, from λ on: the trial's own λ is
    the one it ended at) and measures the stream. ``may_continue(trials, λ)`` says
    whether the budget allows another trial at λ; when it does not, the closest trial is kept.

    Raises:
        TargetUnreachable: see :meth:`LambdaSearch.next_lmbda`.
    """
    search = LambdaSearch(target, responsiveness=responsiveness)
    lmbda = target.first_lmbda() if first_lmbda is None else first_lmbda
    while True:
        trial = run_trial(lmbda)
        search.trials.append(trial)
        if search.met(trial):
            break
        lmbda = search.next_lmbda()
        if not may_continue(search.trials, lmbda):
            break
    kept = search.closest()
    return SearchResult(
        kept=search.trials.index(kept), trials=tuple(search.trials), met=search.met(kept)
    )
