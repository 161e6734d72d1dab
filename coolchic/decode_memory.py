"""How much memory decoding a stream takes, from its header alone, and the limit a decoder keeps.

A header is a few dozen bytes, yet it sets every size the decoder allocates: the latent grids,
the upsampled stack (``n_grids`` full-resolution float64 maps), each synthesis layer's output
and, for a ``k x k`` layer, its replicate-padded input and the unfolded neighbourhoods of a
band of rows (``C_in·k²`` values a pixel), and the output planes. A 16384x16384 header with
the widest synthesis the limits allow would need about 1 TiB; even the smallest decoder at
that size needs about 17 GiB. So :func:`estimate_decode_bytes` computes the peak from the
header before anything large is allocated, and :func:`check_decode_memory` refuses a stream
whose estimate exceeds the limit (:data:`DEFAULT_DECODE_MEMORY_LIMIT`, or
:data:`MEMORY_LIMIT_VARIABLE` in the environment) with :class:`~coolchic.errors.LimitExceeded`
(docs/bitstream.md, "Decoder memory bound").

The estimate replays the decoder's allocations in order (:class:`_Ledger`): each phase's
buffers, kept or freed as :func:`coolchic.decoder.decode_stream` keeps or frees them, and takes
the highest total. It is multiplied by :data:`HEAP_SLACK` because glibc keeps freed blocks under
32 MiB in its heap, so resident memory exceeds the live bytes on mid-size images. It counts
what decoding adds to the process (a fresh ``coolchic decode`` starts at about 40 MiB: Python,
numpy, constriction), writing the frame out included. The decoder runs on the calling thread
alone (:mod:`coolchic.decoder.networks`), so the estimate does not depend on a thread count.

Torch-free: it reads the header only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from itertools import pairwise
from typing import Final

from coolchic.bitstream.constants import (
    MAX_ARM_HIDDEN_LAYERS,
    MAX_ARM_WIDTH,
    MAX_HEIGHT,
    MAX_HYPER_GRIDS,
    MAX_IFCE_FEATURES,
    MAX_N_CTX_ROWCOL,
    MAX_N_GRIDS,
    MAX_PRECONCAT_KERNEL,
    MAX_SYNTHESIS_CHANNELS,
    MAX_SYNTHESIS_KERNEL,
    MAX_SYNTHESIS_LAYERS,
    MAX_UPSAMPLING_KERNEL,
    MAX_WIDTH,
    OUT_CHANNELS,
)
from coolchic.bitstream.header import StreamHeader, SynthesisLayerField
from coolchic.errors import CoolchicError, LimitExceeded
from coolchic.model.layout import ifce_inputs

__all__ = [
    "DEFAULT_DECODE_MEMORY_LIMIT",
    "HEAP_SLACK",
    "MEMORY_LIMIT_VARIABLE",
    "check_decode_memory",
    "decode_memory_limit",
    "estimate_decode_bytes",
    "format_bytes",
    "largest_header",
    "parse_bytes",
]

#: The decoder's default memory limit: 8 GiB, half of a 16 GB machine. A 3840x2160 stream is
#: estimated at 1.5 GiB with the v2-sized decoder and 1.1 GiB with the small one (measured:
#: 1.3 GiB and 0.9 GiB), so 4K streams of the encoder's own architectures decode, while every
#: 16384x16384 stream (17 GiB at least) and the largest header (1 TiB) are refused.
DEFAULT_DECODE_MEMORY_LIMIT: Final = 8 << 30
#: Environment variable that overrides the limit: bytes, or a number with a K, M, G or T
#: suffix (powers of 1024), e.g. ``16G``.
MEMORY_LIMIT_VARIABLE: Final = "COOLCHIC_DECODE_MEMORY_LIMIT"
#: Resident memory over live bytes: glibc keeps freed blocks under 32 MiB in its heap.
HEAP_SLACK: Final = 1.3
#: Fixed allowance for the small allocations the ledger does not itemise (per-step ARM
#: buffers, the μ/scale table, the blocks of a filter pass, Python objects).
_FIXED_BYTES: Final = 64 << 20

_FLOAT: Final = 8  # the decoder runs upsampling and synthesis in float64
_INT64: Final = 8
_FLOAT32: Final = 4
#: Bytes a bit of the nn section can cost while it is parsed (every code 1 bit long): one
#: uint8 from ``unpackbits``, the int64 next-one table and positions of the ones, the table's
#: and the code ends' ``tolist()`` copies (an 8-byte slot and a 32-byte int each), and four
#: int64 arrays per code (``coolchic.bitstream.expgolomb.decode``).
_NN_BYTES_PER_BIT: Final = 1 + 2 * _INT64 + 2 * (8 + 32) + 4 * _INT64
#: Bytes a coded latent costs while the wavefront schedule is built, besides the ordered
#: positions: int64 flat indices and steps per grid, the finest grid's rows and columns, both
#: concatenations, the stable argsort and its merge buffer (``coolchic.bitstream.latents``).
_SCHEDULE_BYTES_PER_LATENT: Final = 8 * _INT64
_SUFFIXES: Final[Mapping[str, int]] = {
    "": 1,
    "K": 1 << 10,
    "M": 1 << 20,
    "G": 1 << 30,
    "T": 1 << 40,
}


def largest_header() -> StreamHeader:
    """The header a hostile stream would send: every size at the largest value the limits allow.

    What the bound is designed against (tests and ``benchmarks/fuzz_decode.py`` use it).
    """
    wide = SynthesisLayerField(MAX_SYNTHESIS_CHANNELS, MAX_SYNTHESIS_KERNEL, "linear", "relu")
    last = SynthesisLayerField(OUT_CHANNELS, MAX_SYNTHESIS_KERNEL, "linear", "none")
    return StreamHeader(
        width=MAX_WIDTH,
        height=MAX_HEIGHT,
        frame_format="rgb",
        bit_depth=16,
        n_grids=MAX_N_GRIDS,
        n_ctx_rowcol=MAX_N_CTX_ROWCOL,
        ifce_features=MAX_IFCE_FEATURES,
        hyper_grids=MAX_HYPER_GRIDS,
        arm_hidden=(MAX_ARM_WIDTH,) * MAX_ARM_HIDDEN_LAYERS,
        upsampling_kernel=MAX_UPSAMPLING_KERNEL,
        preconcat_kernel=MAX_PRECONCAT_KERNEL,
        synthesis=(wide,) * (MAX_SYNTHESIS_LAYERS - 1) + (last,),
    )


class _Ledger:
    """Running total of live bytes and its peak (the decoder's allocations, replayed)."""

    def __init__(self) -> None:
        self.live = 0
        self.peak = 0

    def alloc(self, n_bytes: int) -> None:
        self.live += n_bytes
        self.peak = max(self.peak, self.live)

    def free(self, n_bytes: int) -> None:
        self.live -= n_bytes

    def transient(self, n_bytes: int) -> None:
        """A buffer made and dropped within one step."""
        self.alloc(n_bytes)
        self.free(n_bytes)


def _upsampling(ledger: _Ledger, header: StreamHeader) -> int:
    """Replay :func:`coolchic.decoder.networks.upsample`; returns the stack's bytes.

    The final stack is allocated first and filled by the last level. Each level allocates its
    stack (the final one at level 0), the horizontal pass of the coarser stack and, with a
    pre-concatenation filter, that filter's horizontal pass; the coarser stack is dropped once
    the level is done. A pass's padded band of rows is at most ``BAND_SAMPLES`` samples, or
    one padded row.
    """
    from coolchic.decoder.networks import BAND_SAMPLES  # here: the decoder imports this module

    shapes = header.grid_shapes
    n_grids = header.n_grids
    stack = n_grids * header.height * header.width * _FLOAT
    ledger.alloc(stack)
    coarser = 0  # the first stack is the coarsest grid itself, counted with the grids
    for level in range(n_grids - 2, -1, -1):
        (h, w), (h_in, w_in) = shapes[level], shapes[level + 1]
        maps = n_grids - 1 - level
        new = 0 if level == 0 else (maps + 1) * h * w * _FLOAT
        ledger.alloc(new)
        pad = header.upsampling_kernel
        wide = maps * h_in * w * _FLOAT
        band = max(BAND_SAMPLES, w_in + pad) * _FLOAT
        ledger.alloc(wide)
        ledger.transient(band)
        ledger.free(wide)
        if header.preconcat_kernel:
            rows = h * w * _FLOAT
            ledger.alloc(rows)
            ledger.transient(max(BAND_SAMPLES, w + header.preconcat_kernel) * _FLOAT)
            ledger.free(rows)
        ledger.free(coarser)
        coarser = new
    return stack


def _synthesis(ledger: _Ledger, header: StreamHeader, stack: int) -> int:
    """Replay :func:`coolchic.decoder.networks.synthesize`; returns the output's bytes.

    The input (the upsampled stack) stays alive to the end: the caller holds it.
    """
    from coolchic.decoder.networks import MATMUL_MACS  # here: the decoder imports this module

    pixels = header.height * header.width
    channels = header.n_grids
    layers = header.synthesis
    x_bytes = 0
    index = 0
    while index < len(layers):
        end = index
        while end < len(layers) and layers[end].kernel == 1:
            end += 1
        if end > index:  # a run of 1x1 layers: one MLP over chunks of pixels
            run = layers[index:end]
            out = run[-1].out_channels * pixels * _FLOAT
            widths = [channels, *(layer.out_channels for layer in run)]
            largest = max(a * b for a, b in pairwise(widths))
            chunk = min(pixels, max(1, MATMUL_MACS // largest))
            ledger.alloc(out)
            ledger.transient(2 * chunk * max(widths) * _FLOAT)
            channels, index = run[-1].out_channels, end
        else:  # a k x k layer: replicate-padded input, unfolded band, output
            layer = layers[index]
            k = layer.kernel
            padded = channels * (header.height + k - 1) * (header.width + k - 1) * _FLOAT
            unfolded = channels * k * k
            macs_per_row = layer.out_channels * unfolded * header.width
            rows = min(header.height, max(1, MATMUL_MACS // macs_per_row))
            band = (unfolded + 2 * layer.out_channels) * rows * header.width * _FLOAT
            out = layer.out_channels * pixels * _FLOAT
            ledger.alloc(padded + out)
            ledger.transient(band)
            ledger.free(padded)
            channels, index = layer.out_channels, index + 1
        ledger.free(x_bytes)
        x_bytes = out
    if header.synthesis_stabiliser:  # its 1x1 map of the stack, added to the output in place
        linear = channels * pixels * _FLOAT
        chunk = min(pixels, max(1, MATMUL_MACS // (header.n_grids * channels)))
        ledger.alloc(linear)
        ledger.transient(2 * chunk * max(header.n_grids, channels) * _FLOAT)
        ledger.free(linear)
    ledger.free(stack)
    return x_bytes


def _plane_sizes(header: StreamHeader) -> list[int]:
    pixels = header.height * header.width
    if header.frame_format == "yuv420":
        return [pixels, pixels // 4, pixels // 4]
    return [pixels] * 3


def estimate_decode_bytes(header: StreamHeader) -> int:
    """Peak memory that decoding this stream and writing its frame adds to the process (bytes).

    Args:
        header: a validated header (:func:`~coolchic.bitstream.header.read_header`).

    Returns:
        The ledger's peak times :data:`HEAP_SLACK`, plus a fixed allowance.
    """
    ledger = _Ledger()
    n_latents = sum(h * w for h, w in header.coded_grid_shapes)  # hyper-latents included
    n_coded = header.n_coded_latents
    n_params = header.max_n_parameters
    # Sections sliced out of the file.
    kept = header.nn_bytes + header.latent_bytes
    ledger.alloc(kept)
    # nn section: the parse (per bit), the int64 values and their predictions, then the sums
    # and the float64 values of the networks, kept.
    ledger.transient(8 * header.nn_bytes * _NN_BYTES_PER_BIT + 2 * n_params * _INT64)
    ledger.alloc(n_params * (_INT64 + _FLOAT))
    kept += n_params * (_INT64 + _FLOAT)
    # Latent section: words, the int8 buffer (every grid at the widest grid's stride), the
    # ordered positions (and the coarser-context or inter-feature positions and targets) and
    # the schedule's temporaries, then the int64 grids it returns.
    n, shapes = header.n_ctx_rowcol, header.coded_grid_shapes
    links = header.coarser_contexts
    if header.ifce_features:
        links += max(ifce_inputs(header.n_grids, header.hyper_grids), default=0) + 1
    rows = sum(h for h, _ in shapes) + len(shapes) * n + 1
    buffer = rows * (header.width + 2 * n) + 1
    index = 4 if buffer + 1 < 2**31 else _INT64  # the schedule's positions: int32 if they fit
    positions = n_coded * (1 + links) * index
    scratch = buffer + 3 * header.latent_bytes + positions
    ledger.alloc(scratch)
    ledger.transient(n_coded * (_SCHEDULE_BYTES_PER_LATENT + 3 * links * index))
    ledger.alloc(n_latents * _INT64)
    ledger.free(scratch)
    ledger.alloc(n_latents * _FLOAT)  # float64 grids (the int64 ones are dropped)
    ledger.free(n_latents * _INT64)
    kept += n_latents * _FLOAT
    x_hat = _synthesis(ledger, header, _upsampling(ledger, header))
    # Output planes: chroma pooling (4:2:0, two partial sums at a time), clamp/scale/round per
    # plane, integers, float32.
    planes = _plane_sizes(header)
    sample = 1 if header.bit_depth <= 8 else 2
    pooled = sum(planes[1:]) * _FLOAT if header.frame_format == "yuv420" else 0
    ledger.alloc(pooled)
    ledger.transient(pooled)
    for size in planes:
        ledger.transient(2 * size * _FLOAT)
        ledger.alloc(size * sample)
    for size in planes:
        ledger.transient(size * _FLOAT32)
        ledger.alloc(size * _FLOAT32)
    # decode_stream returns the float32 frame only; writing it converts each plane back to
    # integers (two float64 temporaries) and joins the samples into one bytes object.
    ledger.free(kept + pooled + sum(planes) * sample + x_hat)
    for size in planes:
        ledger.transient(2 * size * _FLOAT)
    ledger.transient(3 * sum(planes) * sample)
    return int(ledger.peak * HEAP_SLACK) + _FIXED_BYTES


def parse_bytes(text: str) -> int:
    """``"8589934592"``, ``"8G"``, ``"512M"``, ``"1.5T"`` → bytes (suffixes are powers of 1024).

    Raises:
        ValueError: not a positive number with an optional K, M, G or T suffix.
    """
    cleaned = text.strip().upper().removesuffix("IB").removesuffix("B")
    suffix = cleaned[-1:] if cleaned[-1:] in _SUFFIXES else ""
    number = cleaned[: len(cleaned) - len(suffix)].strip()
    try:
        value = float(number)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"expected a positive size such as 8G or 512M, found {text!r}")
    return int(value * _SUFFIXES[suffix])


def format_bytes(n_bytes: int) -> str:
    """``3.6 GiB``, ``412 MiB``: one decimal from GiB on."""
    if n_bytes >= 1 << 40:
        return f"{n_bytes / (1 << 40):.1f} TiB"
    if n_bytes >= 1 << 30:
        return f"{n_bytes / (1 << 30):.1f} GiB"
    return f"{n_bytes / (1 << 20):.0f} MiB"


def decode_memory_limit(environ: Mapping[str, str] | None = None) -> int:
    """The limit in force: :data:`MEMORY_LIMIT_VARIABLE` if set, else the default.

    Raises:
        CoolchicError: the variable is set to something that is not a size.
    """
    environ = os.environ if environ is None else environ
    text = environ.get(MEMORY_LIMIT_VARIABLE, "").strip()
    if not text:
        return DEFAULT_DECODE_MEMORY_LIMIT
    try:
        return parse_bytes(text)
    except ValueError as error:
        raise CoolchicError(f"{MEMORY_LIMIT_VARIABLE}: {error}") from None


def check_decode_memory(header: StreamHeader, limit: int | None = None) -> int:
    """Refuse a stream whose decoding would need more than ``limit`` bytes.

    Args:
        header: the stream's header.
        limit: bytes; None reads :func:`decode_memory_limit`.

    Returns:
        The estimate (bytes).

    Raises:
        LimitExceeded: the estimate is above the limit.
    """
    limit = decode_memory_limit() if limit is None else limit
    estimate = estimate_decode_bytes(header)
    if estimate > limit:
        raise LimitExceeded(
            f"decoding this {header.width}x{header.height} stream ({header.n_grids} grids, "
            f"{len(header.synthesis)} synthesis layers) needs about {format_bytes(estimate)}, "
            f"more than the decoder's limit of {format_bytes(limit)} (raise it with "
            f"{MEMORY_LIMIT_VARIABLE}, e.g. {MEMORY_LIMIT_VARIABLE}=16G)"
        )
    return estimate
