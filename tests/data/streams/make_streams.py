"""Write the stored test streams and what they must decode to (tests/test_stored_streams.py).

The streams pin the format: once written, they are never regenerated, so that a change to the
writer or the reader that alters a byte of the layout, or a decoded sample, fails the test
instead of moving the expectation with it. The version-2 streams stay when the format moves
on: the decoder is held to reading them.

    python tests/data/streams/make_streams.py   # writes the streams that are missing

Add a case for a new format version; never overwrite a stored stream.

Each ``<name>.cool`` gets a ``<name>.json`` beside it: the header fields as the reader parsed
them, the header length, the frame facts and the SHA-256 of each decoded plane's samples
(little-endian integers).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
if str(HERE.parents[2]) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(HERE.parents[2]))

from coolchic.codec import EncoderConfig, encode  # noqa: E402
from coolchic.io import read_frame  # noqa: E402
from coolchic.io.frame import Frame  # noqa: E402
from coolchic.io.naming import parse_yuv_name  # noqa: E402
from coolchic.model.config import ModelConfig, parse_synthesis  # noqa: E402
from tests.test_stored_streams import describe  # noqa: E402

SAMPLES = HERE.parents[2] / "samples"


def _yuv444_10b() -> Frame:
    """The 10-bit 4:2:0 sample with its chroma repeated to 4:4:4, frame rate 29.97."""
    frame = read_frame(SAMPLES / "hills-synthetic_128x96_01p_yuv420_10b.yuv")
    y, u, v = frame.integer_planes()
    up = tuple(np.repeat(np.repeat(p, 2, axis=0), 2, axis=1) for p in (u, v))
    source = parse_yuv_name("hills-synthetic_128x96_29.97p_yuv444_10b.yuv")
    return Frame.from_integer_planes((y, *up), fmt="yuv444", bit_depth=10, source=source)


def _architecture(
    grids: int,
    ctx: int,
    arm: tuple[int, ...],
    synthesis: str,
    kernel: int,
    preconcat: int,
    coarser: int = 0,
    stabilisers: bool = False,
    ifce: int = 0,
    hyper: int = 0,
) -> ModelConfig:
    return ModelConfig(
        grids,
        ctx,
        arm,
        parse_synthesis(synthesis),
        upsampling_kernel=kernel,
        preconcat_kernel=preconcat,
        coarser_contexts=coarser,
        arm_stabiliser=stabilisers,
        synthesis_stabiliser=stabilisers,
        ifce_features=ifce,
        hyper_grids=hyper,
    )


#: name → (frame, λ, architecture; None: the encoder's choice): three frame formats, two bit
#: depths, with and without a frame rate, a grid flagged all zero, and architectures away from
#: the defaults (a residual 3x3 layer, two ARM layers or none, K = 4, no pre-concatenation,
#: N = 1 and 3).
CASES = {
    "hills_yuv420_8b": (
        lambda: read_frame(SAMPLES / "hills-synthetic_128x96_01p_yuv420_8b.yuv"),
        1e-3,
        None,
    ),
    "hills_yuv444_10b_residual": (
        _yuv444_10b,
        1e-3,
        _architecture(5, 3, (8, 8), "8-1-linear-relu,3-1-linear-relu,3-3-residual-none", 4, 0),
    ),
    "hills_rgb_no_arm_hidden": (
        lambda: read_frame(SAMPLES / "hills-synthetic.png"),
        2e-2,
        _architecture(7, 1, (), "4-1-linear-relu,3-1-linear-none", 8, 3),
    ),
    # format version 3: the coarser-grid contexts (two of them, and one with N = 1)
    "v3_hills_yuv420_8b_coarser2": (
        lambda: read_frame(SAMPLES / "hills-synthetic_128x96_01p_yuv420_8b.yuv"),
        1e-3,
        _architecture(7, 2, (8,), "8-1-linear-relu,3-1-linear-none", 8, 7, coarser=2),
    ),
    "v3_hills_yuv420_10b_coarser1": (
        lambda: read_frame(SAMPLES / "hills-synthetic_128x96_01p_yuv420_10b.yuv"),
        4e-3,
        _architecture(6, 1, (6, 6), "6-1-linear-relu,3-1-linear-none", 6, 5, coarser=1),
    ),
    # format version 4: the ARM and synthesis stabilisers, after a 3x3 layer and with coarser
    # contexts;
    # and the encoder's own choice for the frame, written as version 4
    "v4_hills_yuv420_10b_stabiliser": (
        lambda: read_frame(SAMPLES / "hills-synthetic_128x96_01p_yuv420_10b.yuv"),
        1e-3,
        _architecture(
            7,
            2,
            (8,),
            "8-1-linear-relu,3-1-linear-none,3-3-residual-none",
            8,
            7,
            coarser=1,
            stabilisers=True,
        ),
    ),
    "v4_hills_rgb_default": (lambda: read_frame(SAMPLES / "hills-synthetic.png"), 4e-3, None),
    # format version 5: Cool-chic 5's inter-feature context with hyper-latents (and the ARM
    # stabiliser beside it), and one without hyper-latents on fewer grids
    "v5_hills_yuv420_8b_ifce_hyper": (
        lambda: read_frame(SAMPLES / "hills-synthetic_128x96_01p_yuv420_8b.yuv"),
        1e-3,
        _architecture(
            7,
            2,
            (8,),
            "8-1-linear-relu,3-1-linear-none",
            8,
            7,
            stabilisers=True,
            ifce=2,
            hyper=3,
        ),
    ),
    "v5_hills_yuv420_10b_ifce": (
        lambda: read_frame(SAMPLES / "hills-synthetic_128x96_01p_yuv420_10b.yuv"),
        4e-3,
        _architecture(5, 1, (6,), "6-1-linear-relu,3-1-linear-none", 6, 5, ifce=3),
    ),
    # format version 6: the architecture as one preset code (the encoder's own choice, preset
    # 1, and preset 4 with the inter-feature context), and written out after code 0
    "v6_hills_yuv420_8b_default": (
        lambda: read_frame(SAMPLES / "hills-synthetic_128x96_01p_yuv420_8b.yuv"),
        1e-3,
        None,
    ),
    "v6_hills_yuv420_10b_preset4": (
        lambda: read_frame(SAMPLES / "hills-synthetic_128x96_01p_yuv420_10b.yuv"),
        4e-4,
        _architecture(7, 3, (8,), "8-1-linear-relu,3-1-linear-none", 8, 7, ifce=2, hyper=3),
    ),
    "v6_hills_rgb_explicit": (
        lambda: read_frame(SAMPLES / "hills-synthetic.png"),
        4e-3,
        _architecture(7, 2, (12,), "8-1-linear-relu,3-1-linear-none", 8, 7),
    ),
    # format version 7: Rice codes for the parameter groups where they are shorter, and no
    # latent section length (the encoder's own choice, and the inter-feature preset at 10 bits)
    "v7_hills_yuv420_8b_default": (
        lambda: read_frame(SAMPLES / "hills-synthetic_128x96_01p_yuv420_8b.yuv"),
        4e-3,
        None,
    ),
    "v7_hills_yuv420_10b_preset3": (
        lambda: read_frame(SAMPLES / "hills-synthetic_128x96_01p_yuv420_10b.yuv"),
        1e-3,
        _architecture(7, 2, (8,), "8-1-linear-relu,3-1-linear-none", 8, 7, ifce=2, hyper=3),
    ),
    # format version 8: the 16-wide synthesis presets (5 with 12 contexts, 6 with 24)
    "v8_hills_yuv420_8b_preset5": (
        lambda: read_frame(SAMPLES / "hills-synthetic_128x96_01p_yuv420_8b.yuv"),
        1e-3,
        _architecture(7, 2, (8,), "16-1-linear-relu,3-1-linear-none", 8, 7, ifce=2, hyper=3),
    ),
    "v8_hills_yuv420_10b_preset6": (
        lambda: read_frame(SAMPLES / "hills-synthetic_128x96_01p_yuv420_10b.yuv"),
        4e-4,
        _architecture(7, 3, (8,), "16-1-linear-relu,3-1-linear-none", 8, 7, ifce=2, hyper=3),
    ),
    # format version 9: the 16-wide ARM preset (7), in both bit depths
    "v9_hills_yuv420_8b_preset7": (
        lambda: read_frame(SAMPLES / "hills-synthetic_128x96_01p_yuv420_8b.yuv"),
        4e-4,
        _architecture(7, 3, (16,), "16-1-linear-relu,3-1-linear-none", 8, 7, ifce=2, hyper=3),
    ),
    "v9_hills_yuv420_10b_preset7": (
        lambda: read_frame(SAMPLES / "hills-synthetic_128x96_01p_yuv420_10b.yuv"),
        2e-4,
        _architecture(7, 3, (16,), "16-1-linear-relu,3-1-linear-none", 8, 7, ifce=2, hyper=3),
    ),
}


def main() -> None:
    torch.set_num_threads(1)
    for name, (load, lmbda, model) in CASES.items():
        if (HERE / f"{name}.cool").exists() and "--overwrite" not in sys.argv[1:]:
            continue
        config = EncoderConfig(lmbda=lmbda, recipe="instant", model=model)
        data = encode(load(), config).bitstream
        (HERE / f"{name}.cool").write_bytes(data)
        text = json.dumps(describe(data), indent=1, sort_keys=True)
        (HERE / f"{name}.json").write_text(text + "\n")
        print(f"{name}: {len(data)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
