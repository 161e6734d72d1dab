"""Decoder memory: the header-only estimate against the peak RSS of ``coolchic decode``.

For each case, a valid stream is built without training (random latents in [−2, 2] coded by
the library's own range coder, an ARM that predicts μ = 0 and b = e², small random synthesis
weights: decoding it does all the work a trained stream's decoding does), or taken from
``--stream FILE`` (e.g. a real encode); then ``coolchic -q decode`` runs in a fresh process,
and the script prints, per stream, :func:`coolchic.decode_memory.estimate_decode_bytes`, the
child's peak resident memory (``ru_maxrss``), what decoding added to it (the peak minus the
peak of a run that only refuses the hostile header, i.e. Python, numpy and the package
imported), and the ratio estimate / added: the estimate is honest when that ratio is above 1.

Cases: ``WxH:FORMAT:SYNTHESIS:GRIDS[:K:KP:BITS]``, synthesis in the CLI grammar with ``/``
instead of ``,`` (``X`` is 3), e.g. ``1920x1080:yuv420:40-1-linear-relu/X-1-linear-relu/
X-3-residual-relu/X-3-residual-none:7`` (K: upsampling kernel, default 8; KP: pre-concatenation
kernel, default 7; BITS: default 8).

Run::

    python benchmarks/decode_memory.py                       # the default cases, up to 3840x2160
    python benchmarks/decode_memory.py --cases 512x512:yuv420:8-1-linear-relu/X-1-linear-none:7
    python benchmarks/decode_memory.py --cases "" --stream a.cool --stream b.cool
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO_ROOT))

from coolchic.bitstream.constants import NN_GROUPS  # noqa: E402
from coolchic.bitstream.fixed_point import FixedPointArm, QuantizedLayer  # noqa: E402
from coolchic.bitstream.header import (  # noqa: E402
    FrameFormat,
    header_for_model,
    pack_stream,
    read_header,
)
from coolchic.bitstream.latents import encode_latents  # noqa: E402
from coolchic.bitstream.nn_params import encode_quantized  # noqa: E402
from coolchic.decode_memory import estimate_decode_bytes, format_bytes  # noqa: E402
from coolchic.model.config import ModelConfig, parse_synthesis  # noqa: E402
from coolchic.model.layout import grid_shapes  # noqa: E402
from coolchic.nnquant.params import parameter_layout  # noqa: E402

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
from fuzz_decode import hostile_stream  # noqa: E402

SMALL = "8-1-linear-relu/X-1-linear-none"
V2 = "40-1-linear-relu/X-1-linear-relu/X-3-residual-relu/X-3-residual-none"
DEFAULT_CASES = (
    f"1280x720:yuv420:{SMALL}:7",
    f"1152x768:yuv420:{V2}:7",
    f"1920x1080:yuv420:{SMALL}:7",
    f"1920x1080:yuv420:{V2}:7",
    "1920x1080:yuv444:16-3-linear-relu/X-3-linear-none:7:8:7:10",
    "1024x1024:yuv420:X-5-linear-none:10:16:15",
    f"3840x2160:yuv420:{SMALL}:7",
    f"3840x2160:yuv420:{V2}:7",
)
#: Step exponent of every parameter group of the built streams.
_EXP = 8


def synthetic_stream(
    width: int,
    height: int,
    fmt: FrameFormat,
    config: ModelConfig,
    bit_depth: int = 8,
    seed: int = 0,
) -> bytes:
    """A valid stream of this size and architecture, built without training."""
    rng = np.random.default_rng(seed)
    q: dict[str, dict[str, list[np.ndarray]]] = {}
    for (module, kind), parameters in parameter_layout(config).items():
        if not parameters:
            continue
        arrays = [np.zeros(shape, np.int64) for _, shape in parameters]
        if module == "synthesis":
            arrays = [rng.integers(-3, 4, a.shape) for a in arrays]
        q.setdefault(module, {})[kind] = arrays
    q["arm"]["bias"][-1] = np.array([0, 6 << _EXP])  # μ = 0, log-scale 6 − 4: b = e²
    nn, codes = encode_quantized(q)
    layers = [
        QuantizedLayer(w, b, _EXP, _EXP)
        for w, b in zip(q["arm"]["weight"], q["arm"]["bias"], strict=True)
    ]
    arm = FixedPointArm.from_quantized(layers[:-1], layers[-1])
    shapes = grid_shapes(height, width, config.n_grids)
    latents = encode_latents([rng.integers(-2, 3, shape) for shape in shapes], arm, 2)
    exps = dict.fromkeys(NN_GROUPS, _EXP)
    zero = latents.zero_grids
    header = header_for_model(
        config, width, height, fmt, bit_depth, exps=exps, codes=codes, zero_grids=zero
    )
    return pack_stream(header, nn, latents.data)


def parse_case(text: str) -> tuple[str, int, int, str, ModelConfig, int]:
    """``WxH:FORMAT:SYNTHESIS:GRIDS[:K:KP:BITS]`` → (label, width, height, format, config, bits)."""
    parts = text.split(":")
    size, fmt, synthesis, grids = parts[:4]
    extra = [int(v) for v in parts[4:7]]
    kernel, preconcat, bits = extra + [8, 7, 8][len(extra) :]
    width, height = (int(v) for v in size.lower().split("x"))
    config = ModelConfig(
        n_grids=int(grids),
        n_ctx_rowcol=2,
        arm_hidden=(8,),
        synthesis=parse_synthesis(synthesis.replace("/", ",")),
        upsampling_kernel=kernel,
        preconcat_kernel=preconcat,
    )
    label = f"{size} {fmt} {bits}b, {grids} grids, {synthesis.replace('/', ',')}"
    return label, width, height, fmt, config, bits


def peak_of_decode(path: Path, out: Path) -> tuple[int, int, float]:
    """``(return code, peak resident bytes, seconds)`` of ``coolchic -q decode`` on ``path``,
    written into the folder ``out``."""
    command = [sys.executable, "-m", "coolchic", "-q", "decode", str(path), "-o", f"{out}/"]
    wrapper = (
        "import resource, subprocess, sys; "
        "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
        "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", wrapper, *command], capture_output=True, text=True, check=True
    )
    code, peak_kib = result.stdout.split()
    return int(code), int(peak_kib) * 1024, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cases",
        type=lambda text: [c for c in text.split(",") if c],
        default=list(DEFAULT_CASES),
        help="comma-separated WxH:FORMAT:SYNTHESIS:GRIDS[:K:KP:BITS] (default: 8 cases)",
    )
    parser.add_argument("--stream", type=Path, action="append", default=[], help="a .cool file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        hostile = work / "hostile.cool"
        hostile.write_bytes(hostile_stream())
        code, baseline, _ = peak_of_decode(hostile, work / "out")
        print(f"baseline (hostile header, refused with code {code}): {format_bytes(baseline)}")
        rows: list[tuple[str, Path]] = [(str(path), path) for path in args.stream]
        for index, case in enumerate(args.cases):
            label, width, height, fmt, config, bits = parse_case(case)
            path = work / f"case{index}.cool"
            started = time.perf_counter()
            path.write_bytes(synthetic_stream(width, height, fmt, config, bits))
            print(f"built {label} in {time.perf_counter() - started:.1f} s", flush=True)
            rows.append((label, path))
        print(f"\n{'stream':<78} {'estimate':>9} {'peak':>9} {'added':>9} {'ratio':>6} {'time':>6}")
        for label, path in rows:
            header, _ = read_header(path.read_bytes())
            estimate = estimate_decode_bytes(header)
            code, peak, seconds = peak_of_decode(path, work / "out")
            added = peak - baseline
            ratio = f"{estimate / added:.2f}" if added > 0 else "-"
            status = "" if code == 0 else f"  (exit {code})"
            print(
                f"{label[:78]:<78} {format_bytes(estimate):>9} {format_bytes(peak):>9} "
                f"{format_bytes(added):>9} {ratio:>6} {seconds:>5.1f}s{status}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
