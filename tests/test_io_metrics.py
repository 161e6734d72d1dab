"""Metrics: exact PSNR values for known perturbations, and the weightings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from coolchic.io import Frame, frame_metrics


def _yuv(y: np.ndarray, u: np.ndarray, v: np.ndarray, bit_depth: int = 8) -> Frame:
    return Frame.from_integer_planes((y, u, v), fmt="yuv420", bit_depth=bit_depth)


def test_identical_frames_have_infinite_psnr() -> None:
    y = np.full((4, 4), 100, np.uint8)
    c = np.full((2, 2), 50, np.uint8)
    result = frame_metrics(_yuv(y, c, c), _yuv(y, c, c))
    assert all(math.isinf(value) for value in result.as_dict().values())


def test_known_perturbation_gives_exact_psnr() -> None:
    y = np.full((4, 4), 100, np.uint8)
    c = np.full((2, 2), 50, np.uint8)
    y2 = y.copy()
    y2[0, 0] += 16  # MSE_Y = 256 / 16 = 16 (in 8-bit units)
    u2 = c.copy()
    u2[1, 1] += 2  # MSE_U = 4 / 4 = 1
    result = frame_metrics(_yuv(y, c, c), _yuv(y2, u2, c)).as_dict()
    peak2 = 255.0**2
    assert result["psnr_y"] == pytest.approx(10 * math.log10(peak2 / 16))
    assert result["psnr_u"] == pytest.approx(10 * math.log10(peak2 / 1))
    assert math.isinf(result["psnr_v"])
    weighted_mse = (4 * 16 + 1 + 0) / 6
    assert result["psnr_yuv"] == pytest.approx(10 * math.log10(peak2 / weighted_mse))
    assert math.isinf(result["psnr_yuv_611"])


def test_611_average_and_10bit_peak() -> None:
    y = np.full((4, 4), 500, np.uint16)
    c = np.full((2, 2), 500, np.uint16)
    result = frame_metrics(_yuv(y, c, c, 10), _yuv(y + 1, c + 2, c + 4, 10)).as_dict()
    peak2 = 1023.0**2
    psnrs = [10 * math.log10(peak2 / mse) for mse in (1, 4, 16)]
    assert result["psnr_y"] == pytest.approx(psnrs[0])
    assert result["psnr_yuv_611"] == pytest.approx((6 * psnrs[0] + psnrs[1] + psnrs[2]) / 8)
    assert result["psnr_yuv"] == pytest.approx(10 * math.log10(peak2 / ((4 + 4 + 16) / 6)))


def test_rgb_psnr_is_over_all_three_channels() -> None:
    planes = tuple(np.full((2, 2), 10, np.uint8) for _ in range(3))
    noisy = (planes[0] + 3, planes[1], planes[2])
    reference = Frame.from_integer_planes(planes, fmt="rgb", bit_depth=8)
    distorted = Frame.from_integer_planes(noisy, fmt="rgb", bit_depth=8)
    result = frame_metrics(reference, distorted).as_dict()
    assert set(result) == {"psnr_r", "psnr_g", "psnr_b", "psnr_rgb"}
    assert result["psnr_rgb"] == pytest.approx(10 * math.log10(255.0**2 / 3.0))


def test_mismatched_frames_are_refused() -> None:
    y = np.zeros((4, 4), np.uint8)
    c = np.zeros((2, 2), np.uint8)
    with pytest.raises(ValueError, match="differ in format, size or bit depth"):
        frame_metrics(_yuv(y, c, c), _yuv(y.astype(np.uint16), c.astype(np.uint16), c, 10))
