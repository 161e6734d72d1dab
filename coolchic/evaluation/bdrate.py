"""Bjøntegaard delta rate (BD-rate) between two rate-distortion curves.

Each curve is reduced to its Pareto front, log(rate) is interpolated as a function of PSNR with
a piecewise cubic Hermite interpolator (PCHIP, Fritsch–Carlson slopes, as scipy's
``PchipInterpolator``), both interpolants are integrated exactly over the overlapping PSNR
interval, and ``BD-rate = exp(mean difference of log rates) − 1``. scipy is used when
installed; the same PCHIP is computed here otherwise, so the figure does not depend on it.
Used by ``coolchic report`` and ``benchmarks/rd.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["BdRate", "bd_rate", "pareto_front", "pchip_evaluate", "pchip_integral"]


def pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Derivatives at the knots of the Fritsch–Carlson PCHIP (scipy's ``PchipInterpolator``).

    Interior knots: weighted harmonic mean of the neighbouring secant slopes, zero at a local
    extremum. End knots: the shape-preserving three-point formula.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    h = np.diff(x)
    m = np.diff(y) / h
    n = len(x)
    if n == 2:
        return np.array([m[0], m[0]])
    d = np.zeros(n)
    for k in range(1, n - 1):
        if m[k - 1] * m[k] > 0:
            w1 = 2.0 * h[k] + h[k - 1]
            w2 = h[k] + 2.0 * h[k - 1]
            d[k] = (w1 + w2) / (w1 / m[k - 1] + w2 / m[k])

    def edge(h0: float, h1: float, m0: float, m1: float) -> float:
        slope = ((2.0 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
        if np.sign(slope) != np.sign(m0):
            return 0.0
        if np.sign(m0) != np.sign(m1) and abs(slope) > 3.0 * abs(m0):
            return 3.0 * m0
        return float(slope)

    d[0] = edge(h[0], h[1], m[0], m[1])
    d[-1] = edge(h[-1], h[-2], m[-1], m[-2])
    return d


def _segment_coefficients(
    x: np.ndarray, y: np.ndarray, d: np.ndarray, k: int
) -> tuple[float, float, float, float, float]:
    """Segment k as ``c0 + c1·t + c2·t² + c3·t³`` with ``t = (x − x_k)/h``; returns (h, c0..c3)."""
    h = float(x[k + 1] - x[k])
    y0, y1, d0, d1 = float(y[k]), float(y[k + 1]), float(d[k]), float(d[k + 1])
    c2 = 3.0 * (y1 - y0) - h * (2.0 * d0 + d1)
    c3 = 2.0 * (y0 - y1) + h * (d0 + d1)
    return h, y0, h * d0, c2, c3


def pchip_evaluate(x: np.ndarray, y: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Evaluate the PCHIP through (x, y) at ``points`` (inside [x[0], x[-1]])."""
    x = np.asarray(x, dtype=np.float64)
    d = pchip_slopes(x, y)
    out = []
    for p in np.atleast_1d(points):
        k = int(np.clip(np.searchsorted(x, p, side="right") - 1, 0, len(x) - 2))
        h, c0, c1, c2, c3 = _segment_coefficients(x, np.asarray(y, np.float64), d, k)
        t = (p - x[k]) / h
        out.append(c0 + t * (c1 + t * (c2 + t * c3)))
    return np.array(out)


def pchip_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    """Exact integral over [lo, hi] ⊂ [x[0], x[-1]] of the PCHIP through (x, y)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    d = pchip_slopes(x, y)
    total = 0.0
    for k in range(len(x) - 1):
        a, b = max(lo, x[k]), min(hi, x[k + 1])
        if b <= a:
            continue
        h, c0, c1, c2, c3 = _segment_coefficients(x, y, d, k)
        ta, tb = (a - x[k]) / h, (b - x[k]) / h

        def antiderivative(t: float, h=h, c0=c0, c1=c1, c2=c2, c3=c3) -> float:
            return h * t * (c0 + t * (c1 / 2.0 + t * (c2 / 3.0 + t * c3 / 4.0)))

        total += antiderivative(tb) - antiderivative(ta)
    return total


def _integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float, use_scipy: bool) -> float:
    if use_scipy:
        from scipy.interpolate import PchipInterpolator

        return float(PchipInterpolator(x, y).integrate(lo, hi))
    return pchip_integral(x, y, lo, hi)


def scipy_available() -> bool:
    try:
        import scipy.interpolate  # noqa: F401
    except ImportError:
        return False
    return True


def pareto_front(rates: Sequence[float], psnrs: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The points no other point beats (fewer-or-equal bits and higher-or-equal PSNR).

    Non-finite values and non-positive rates are dropped. Returned sorted by PSNR, with rate and
    PSNR both strictly increasing.
    """
    pairs = sorted(
        (float(r), float(p))
        for r, p in zip(rates, psnrs, strict=True)
        if math.isfinite(r) and math.isfinite(p) and r > 0
    )
    front: list[tuple[float, float]] = []
    for rate, psnr in pairs:  # increasing rate; keep a point only if it raises the best PSNR
        if front and psnr <= front[-1][1]:
            continue
        if front and rate == front[-1][0]:
            front.pop()
        front.append((rate, psnr))
    return np.array([r for r, _ in front]), np.array([p for _, p in front])


@dataclass(frozen=True)
class BdRate:
    """BD-rate of a test curve against an anchor, in percent (None when not computable)."""

    percent: float | None
    reason: str = ""
    psnr_range: tuple[float, float] | None = None
    anchor_points: int = 0
    test_points: int = 0

    def text(self) -> str:
        return f"{self.percent:+.2f} %" if self.percent is not None else f"n/a ({self.reason})"


def bd_rate(
    anchor_rates: Sequence[float],
    anchor_psnrs: Sequence[float],
    test_rates: Sequence[float],
    test_psnrs: Sequence[float],
    *,
    min_points: int = 4,
    use_scipy: bool | None = None,
) -> BdRate:
    """Bjøntegaard delta rate of ``test`` against ``anchor`` (PCHIP, overlapping PSNR interval)."""
    if use_scipy is None:
        use_scipy = scipy_available()
    ra, pa = pareto_front(anchor_rates, anchor_psnrs)
    rt, pt = pareto_front(test_rates, test_psnrs)
    counts = {"anchor_points": len(ra), "test_points": len(rt)}
    needed = max(2, min_points)
    if len(ra) < needed or len(rt) < needed:
        return BdRate(None, f"needs >= {needed} RD points per curve", **counts)
    lo, hi = max(pa[0], pt[0]), min(pa[-1], pt[-1])
    if not hi > lo:
        return BdRate(None, "PSNR ranges do not overlap", **counts)
    integral_anchor = _integral(pa, np.log(ra), lo, hi, use_scipy)
    integral_test = _integral(pt, np.log(rt), lo, hi, use_scipy)
    mean_difference = (integral_test - integral_anchor) / (hi - lo)
    return BdRate(100.0 * math.expm1(mean_difference), "", (float(lo), float(hi)), **counts)
