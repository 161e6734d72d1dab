"""Latent range-coding speed: encode and decode seconds with a random integer ARM.

Random Laplace latents (scale growing with the grid index, as after training), ARM
``C → 24 → 24 → 2`` with 24 contexts (``n_ctx_rowcol = 3``), 7 grids. Prints one line per size::

    python benchmarks/latent_coding.py            # 192x128 and 1152x768
    python benchmarks/latent_coding.py 512x768
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from coolchic.bitstream.fixed_point import FixedPointArm
from coolchic.bitstream.latents import decode_latents, encode_latents


def random_arm(n_contexts: int, hidden: tuple[int, ...], seed: int) -> FixedPointArm:
    """An ARM with moderate random weights (step 2^-8) and biases (step 2^-12)."""
    rng = np.random.default_rng(seed)
    layers = []
    width = n_contexts
    for out in hidden:
        weight = np.round(rng.normal(0, 0.05, (out, width)) * 256).astype(np.int64)
        bias = np.round(rng.normal(0, 0.05, out) * 4096).astype(np.int64)
        layers.append((weight, bias, 8, 12))
        width = out
    weight = np.round(rng.normal(0, 0.1, (2, width)) * 256).astype(np.int64)
    bias = np.round(np.array([0.0, 4.0]) * 4096).astype(np.int64)
    return FixedPointArm.from_quantized(layers, (weight, bias, 8, 12))


def random_grids(height: int, width: int, n_grids: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    grids = []
    for i in range(n_grids):
        h, w = -(-height // (1 << i)), -(-width // (1 << i))
        grids.append(np.round(rng.laplace(0.0, 0.5 + i, (h, w))).astype(np.int64))
    return grids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", default=["192x128", "1152x768"], help="WxH")
    parser.add_argument("--grids", type=int, default=7)
    parser.add_argument("--n-ctx-rowcol", type=int, default=3)
    args = parser.parse_args()
    n = args.n_ctx_rowcol
    arm = random_arm(2 * n * (n + 1), (24, 24), seed=0)
    print(f"# {platform.processor() or platform.machine()}, numpy {np.__version__}")
    for size in args.sizes:
        width, height = (int(v) for v in size.split("x"))
        grids = random_grids(height, width, args.grids, seed=1)
        shapes = [g.shape for g in grids]
        n_symbols = sum(g.size for g in grids)
        start = time.perf_counter()
        encoded = encode_latents(grids, arm, n)
        encode_s = time.perf_counter() - start  # includes the encoder's own decode check
        start = time.perf_counter()
        decoded = decode_latents(encoded.data, shapes, arm, n, zero_grids=encoded.zero_grids)
        decode_s = time.perf_counter() - start
        if not all(np.array_equal(a, b) for a, b in zip(decoded, encoded.grids, strict=True)):
            raise SystemExit("decoded latents differ")
        print(
            f"{size}: {n_symbols} latents, {len(encoded.data)} bytes "
            f"({8 * len(encoded.data) / n_symbols:.2f} bits/latent); "
            f"encode {encode_s:.3f} s (incl. verification decode), decode {decode_s:.3f} s"
        )


if __name__ == "__main__":
    main()
