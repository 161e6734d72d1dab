"""Peak resident memory of encodes against the estimate of ``coolchic.resources``.

Each case runs ``coolchic encode`` in a fresh process under ``/usr/bin/time -v`` on a synthetic
frame of the given size (random samples: memory does not depend on the content) and prints the
measured peak, the estimate and their ratio. The training step's memory does not depend on the
recipe's length, so ``instant`` measures the peak of any recipe with the same decoder.

    python benchmarks/encode_memory.py --sizes 256x256,1152x768,1920x1080 --threads 2
    python benchmarks/encode_memory.py --sizes 1152x768 --decoder v2
    python benchmarks/encode_memory.py --sizes 1152x768 --decoder ifce   # medium's decoder
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from coolchic.codec import SMALL_DECODER, SMALL_DECODER_CONTEXT_FOR_LONG_RECIPES
from coolchic.model.config import DEFAULT_SYNTHESIS, ModelConfig
from coolchic.resources import estimate_encode_bytes

#: ``coolchic encode`` options that select each decoder (the small one is the default).
DECODER_OPTIONS = {
    "small": [],
    "v2": [
        *("--layers-synthesis", DEFAULT_SYNTHESIS, "--layers-arm", "24,24"),
        *("--n-ctx-rowcol", "3", "--latent-n-grids", "7"),
    ],
    "ifce": ["--ifce-features", "2", "--hyper-grids", "3"],
}
DECODER_CONFIGS = {
    "small": SMALL_DECODER,
    "v2": ModelConfig(),
    "ifce": dataclasses.replace(SMALL_DECODER, **SMALL_DECODER_CONTEXT_FOR_LONG_RECIPES),
}


def measure(width: int, height: int, decoder: str, threads: int, folder: Path) -> int:
    """Peak RSS in bytes of one ``instant`` encode."""
    rng = np.random.default_rng(0)
    source = folder / f"mem_{width}x{height}_01p_yuv420_8b.yuv"
    source.write_bytes(rng.integers(0, 256, width * height * 3 // 2, dtype=np.uint8).tobytes())
    command = ["/usr/bin/time", "-v", sys.executable, "-m", "coolchic", "--threads", str(threads)]
    command += ["-q", "encode", str(source), "-o", str(folder / "x.cool"), "--recipe", "instant"]
    result = subprocess.run(
        command + DECODER_OPTIONS[decoder], capture_output=True, text=True, check=True
    )
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr)
    assert found is not None, result.stderr
    return int(found.group(1)) * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256x256,1152x768,1920x1080")
    parser.add_argument("--decoder", choices=sorted(DECODER_OPTIONS), default="small")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print("| size | decoder | peak RSS | estimate | estimate / peak |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            width, height = (int(v) for v in size.split("x"))
            peak = measure(width, height, args.decoder, args.threads, Path(tmp))
            estimate = estimate_encode_bytes(width, height, DECODER_CONFIGS[args.decoder])
            print(
                f"| {size} | {args.decoder} | {peak / 2**20:.0f} MiB | "
                f"{estimate / 2**20:.0f} MiB | {estimate / peak:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
