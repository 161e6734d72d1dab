"""The project's C kernels, compiled on first use: :func:`library` builds and loads one.

Three sources use it:

* ``pointwise_kernel.c`` (:func:`kernel`): :mod:`coolchic.model.pointwise` runs the ARM and
  the 1x1 synthesis layers band by band; with this library each band is one C call instead
  of some thirty PyTorch operators (see the C file for why);
* ``noise_kernel.c`` (:func:`noise_kernel`): the Gaussian noise of the latents' training
  proxy (:func:`coolchic.model.quantizer.gaussian_noise`), a counter-based stream about 3x
  faster than ``torch.randn`` on one thread;
* ``coolchic/bitstream/wavefront_kernel.c``: the latent wavefront's steps
  (:mod:`coolchic.bitstream.latents`).

A library is built with the system's C compiler (``cc``, ``gcc`` or ``clang``), tuned for
the CPU it runs on (``-march=native``; ``-fno-math-errno`` lets ``sqrtf`` be one vector
instruction instead of a call that may set ``errno``), and cached under
``$XDG_CACHE_HOME/coolchic`` (or ``~/.cache/coolchic``), keyed by the source, the flags and
the CPU: a later process loads it in milliseconds.

Without a compiler, where the build fails, or with ``COOLCHIC_COMPILE=0`` in the environment,
:func:`library` returns ``None`` (one warning says why) and the caller's Python form runs
instead. For the pointwise MLP both forms compute the same values up to float rounding: a
seeded encode is reproducible with either, but the two do not write the same bytes. The
wavefront's two forms give identical results.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from coolchic._env import cache_dir, cpu_signature

__all__ = ["MlpKernel", "NoiseKernel", "kernel", "library", "noise_kernel"]

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("pointwise_kernel.c")
NOISE_SOURCE = Path(__file__).with_name("noise_kernel.c")
FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-fPIC", "-shared", "-std=gnu11")
COMPILERS = ("cc", "gcc", "clang")

_pointer = ctypes.c_void_p
_int64 = ctypes.c_int64
_int32 = ctypes.c_int32


@dataclass(frozen=True)
class MlpKernel:
    """The loaded library's two entry points and its size limits (see the C file)."""

    forward: ctypes._CFuncPtr  # type: ignore[name-defined]
    backward: ctypes._CFuncPtr  # type: ignore[name-defined]
    max_width: int
    max_layers: int

    def fits(self, widths: list[int]) -> bool:
        """Whether an MLP with these layer widths (input first) fits the kernel's buffers."""
        return len(widths) - 1 <= self.max_layers and max(widths) <= self.max_width


@functools.cache
def kernel() -> MlpKernel | None:
    """The compiled kernel, or ``None`` where it cannot be built or is turned off.

    Built or loaded once per process (two processes building at once both succeed).
    """
    return _load()


@dataclass(frozen=True)
class NoiseKernel:
    """The noise library's entry point; calls must start at a multiple of ``block``."""

    gaussian: ctypes._CFuncPtr  # type: ignore[name-defined]
    block: int


@functools.cache
def noise_kernel() -> NoiseKernel | None:
    """The compiled Gaussian noise kernel, or ``None`` where it cannot be built or is off."""
    found = library(NOISE_SOURCE)
    if found is None:
        return None
    gaussian = found.coolchic_gaussian_noise
    gaussian.restype = ctypes.c_int  # -1: a start that is not a multiple of the block
    gaussian.argtypes = [
        *(_pointer, _int64, _int64),  # out, first value, count
        *(ctypes.c_uint32, ctypes.c_uint32, ctypes.c_float),  # the two seeds, sigma
    ]
    found.coolchic_noise_block.restype = ctypes.c_int
    return NoiseKernel(gaussian, found.coolchic_noise_block())


@functools.cache
def library(source: Path) -> ctypes.CDLL | None:
    """The compiled C file ``source``, or ``None`` where it cannot be built or is turned off.

    Built or loaded once per process (two processes building at once both succeed).
    """
    if os.environ.get("COOLCHIC_COMPILE", "1") == "0":
        return None
    try:
        return ctypes.CDLL(str(_build(source)))
    except (OSError, subprocess.SubprocessError, RuntimeError) as error:
        logger.warning("%s unavailable (%s); using the Python form", source.name, error)
        return None


def _load() -> MlpKernel | None:
    found = library(SOURCE)
    if found is None:
        return None
    forward = found.coolchic_mlp_forward
    forward.restype = None
    forward.argtypes = [
        *(_pointer, _pointer, _int64, _int64, _int64),  # in, off, row stride, rows, width
        *(_int32, _pointer, _pointer, _pointer, _pointer),  # layers, dims, W, b, relu
        _pointer,  # skip matrix or NULL
        *(_pointer, _int64),  # out, its channel stride
    ]
    backward = found.coolchic_mlp_backward
    backward.restype = ctypes.c_int  # -1: out of memory for its gradient lanes
    backward.argtypes = [
        *forward.argtypes[:11],
        *(_pointer, _int64, _pointer),  # grad out, its stride, grad in
        _int32,  # 1: write grad in (no two columns share an input), 0: add to it
        *(_pointer, _pointer, _pointer),  # grad W, grad b, grad skip
    ]
    max_width, max_layers = _int32(), _int32()
    found.coolchic_kernel_limits(ctypes.byref(max_width), ctypes.byref(max_layers))
    return MlpKernel(forward, backward, max_width.value, max_layers.value)


def _build(source_path: Path) -> Path:
    """The library's path, compiling it (atomically, race-free between processes) if needed."""
    compiler = next((c for c in COMPILERS if shutil.which(c)), None)
    if compiler is None:
        raise RuntimeError("no C compiler (cc, gcc or clang) on PATH")
    source = source_path.read_bytes()
    key = hashlib.sha256(
        b"\0".join([source, " ".join((compiler, *FLAGS)).encode(), cpu_signature().encode()])
    ).hexdigest()[:16]
    target = cache_dir() / f"{source_path.stem}-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        built = Path(scratch) / target.name
        result = subprocess.run(
            [compiler, *FLAGS, "-o", str(built), str(source_path)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            first = (result.stderr.strip().splitlines() or ["no message"])[0]
            raise RuntimeError(f"{compiler} failed: {first}")
        os.replace(built, target)
    return target
