"""Regenerate the shipped samples: a synthetic outdoor-like scene, drawn from formulas.

The pictures are computed here (no photograph is involved), so they carry no third-party
rights; they are dedicated to the public domain (CC0 1.0), like this script.

    python samples/make_samples.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

WIDTH, HEIGHT = 128, 96
HERE = Path(__file__).resolve().parent


def draw_scene(width: int, height: int, seed: int = 2026) -> np.ndarray:
    """An RGB float image in [0, 1]: sky gradient, sun, two hill ridges, a textured field."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    u, v = x / width, y / height
    sky = np.stack([0.95 - 0.5 * v, 0.55 - 0.3 * v + 0.2 * u * v, 0.35 + 0.5 * v], axis=-1)
    image = sky.copy()
    sun = np.hypot(u - 0.72, (v - 0.28) * height / width) < 0.09
    image[sun] = (1.0, 0.92, 0.6)
    far_ridge = v > 0.55 + 0.06 * np.sin(9.0 * u) + 0.03 * np.sin(23.0 * u + 1.0)
    image[far_ridge] = np.stack([0.35 + 0.1 * u, 0.4 + 0.05 * u, 0.55 - 0.1 * u], -1)[far_ridge]
    near_ridge = v > 0.7 + 0.05 * np.cos(6.0 * u + 0.5)
    noise = rng.normal(0.0, 1.0, (height, width))
    kernel = np.ones(3) / 3.0
    for axis in (0, 1):
        noise = np.apply_along_axis(lambda row: np.convolve(row, kernel, mode="same"), axis, noise)
    stripes = 0.5 + 0.5 * np.sin(40.0 * u + 12.0 * v)
    field = np.stack(
        [
            0.25 + 0.1 * stripes + 0.08 * noise,
            0.45 + 0.12 * stripes + 0.1 * noise,
            0.15 + 0.05 * noise,
        ],
        axis=-1,
    )
    image[near_ridge] = field[near_ridge]
    return np.clip(image, 0.0, 1.0)


def rgb_to_yuv420(rgb: np.ndarray, bit_depth: int) -> list[np.ndarray]:
    """BT.709 limited range, chroma by 2x2 averaging; integer planes of the given bit depth."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    luma = 0.2126 * r + 0.7152 * g + 0.0722 * b
    cb = (b - luma) / 1.8556
    cr = (r - luma) / 1.5748
    scale = 1 << (bit_depth - 8)

    def pool(plane: np.ndarray) -> np.ndarray:
        return plane.reshape(plane.shape[0] // 2, 2, plane.shape[1] // 2, 2).mean(axis=(1, 3))

    planes = [
        (16 + 219 * luma) * scale,
        (128 + 224 * pool(cb)) * scale,
        (128 + 224 * pool(cr)) * scale,
    ]
    dtype = np.uint8 if bit_depth == 8 else np.dtype("<u2")
    return [np.clip(np.rint(p), 0, (1 << bit_depth) - 1).astype(dtype) for p in planes]


def main() -> None:
    from PIL import Image

    rgb = draw_scene(WIDTH, HEIGHT)
    for bit_depth in (8, 10):
        name = HERE / f"hills-synthetic_{WIDTH}x{HEIGHT}_01p_yuv420_{bit_depth}b.yuv"
        name.write_bytes(b"".join(p.tobytes() for p in rgb_to_yuv420(rgb, bit_depth)))
    Image.fromarray(np.rint(rgb * 255).astype(np.uint8)).save(HERE / "hills-synthetic.png")


if __name__ == "__main__":
    main()
