"""Distortion metrics on frames, with the weightings the codec and the literature use.

* per-plane PSNR, peak 2^bits - 1 (frames are normalised, so the peak is 1.0);
* ``psnr_yuv``: PSNR of the pixel-count-weighted MSE, (4·MSE_Y + MSE_U + MSE_V)/6 for 4:2:0 —
  what Cool-chic trains on and publishes;
* ``psnr_yuv_611``: the video-coding average (6·PSNR_Y + PSNR_U + PSNR_V)/8;
* ``psnr_rgb``: PSNR of the MSE over the three RGB channels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from coolchic.io.frame import Frame


def mse_to_psnr(mse: float) -> float:
    """PSNR in dB of an MSE on [0, 1] data; an exact match gives +inf."""
    return math.inf if mse <= 0.0 else -10.0 * math.log10(mse)


def plane_mse(reference: np.ndarray, distorted: np.ndarray) -> float:
    difference = reference.astype(np.float64) - distorted.astype(np.float64)
    return float(np.mean(difference * difference))


@dataclass(frozen=True)
class FrameMetrics:
    """PSNRs of a decoded frame against its source; keys follow the report JSON."""

    format: str
    plane_names: tuple[str, str, str]
    plane_mse: tuple[float, float, float]
    plane_psnr: tuple[float, float, float]
    psnr: float
    psnr_yuv_611: float | None

    def as_dict(self) -> dict[str, float]:
        """Flat mapping: ``psnr_y``, ``psnr_u``, ``psnr_v``, ``psnr_yuv``, ``psnr_yuv_611``."""
        values = {
            f"psnr_{name.lower()}": psnr
            for name, psnr in zip(self.plane_names, self.plane_psnr, strict=True)
        }
        if self.format == "rgb":
            values["psnr_rgb"] = self.psnr
        else:
            values["psnr_yuv"] = self.psnr
            assert self.psnr_yuv_611 is not None
            values["psnr_yuv_611"] = self.psnr_yuv_611
        return values


def frame_metrics(reference: Frame, distorted: Frame) -> FrameMetrics:
    """Compare two frames of the same format, size and bit depth.

    Both are rounded to their bit depth first, so the figures are those of the files on disk.

    Raises:
        ValueError: the frames are not comparable.
    """
    if (reference.format, reference.width, reference.height, reference.bit_depth) != (
        distorted.format,
        distorted.width,
        distorted.height,
        distorted.bit_depth,
    ):
        raise ValueError(
            "frames differ in format, size or bit depth: "
            f"{_describe(reference)} against {_describe(distorted)}"
        )
    peak = float((1 << reference.bit_depth) - 1)
    mses = tuple(
        plane_mse(ref, dist) / (peak * peak)
        for ref, dist in zip(reference.integer_planes(), distorted.integer_planes(), strict=True)
    )
    psnrs = tuple(mse_to_psnr(mse) for mse in mses)
    counts = [plane.size for plane in reference.planes]
    weighted_mse = sum(m * c for m, c in zip(mses, counts, strict=True)) / sum(counts)
    psnr_611 = None
    if reference.format != "rgb":
        psnr_611 = (6.0 * psnrs[0] + psnrs[1] + psnrs[2]) / 8.0
    return FrameMetrics(
        format=reference.format,
        plane_names=reference.plane_names,
        plane_mse=mses,  # type: ignore[arg-type]
        plane_psnr=psnrs,  # type: ignore[arg-type]
        psnr=mse_to_psnr(weighted_mse),
        psnr_yuv_611=psnr_611,
    )


def _describe(frame: Frame) -> str:
    return f"{frame.format} {frame.width}x{frame.height} {frame.bit_depth}-bit"
