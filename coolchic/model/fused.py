"""Element-wise chains of the training step, compiled into single kernels on large tensors.

The soft-rounding proxy (two soft-roundings around the noise) and the Laplace rate are
chains of some twenty element-wise operators over every latent; in eager PyTorch each one is
a pass over memory, forward and backward. ``torch.compile`` fuses each chain into one kernel:
at 1920x1080 (2.8 M latents) the two chains' forward and backward went from ~400 ms to
~50 ms a step on two cores (BENCHMARKS.md, "training step").

Compilation costs a minute or two of C++ builds the first time a frame size is seen on a
machine (``torch.compile`` keeps them on disk, in ``~/.cache/coolchic/torch-compile`` by
default (:func:`use_persistent_cache`), so later processes load them in
seconds), so it is used only where a `fast` encode gains back more than that: training steps
on inputs of :data:`FUSE_MIN_ELEMENTS` elements and more. The networks-only phase, whose
latents are fixed, runs the same graphs as the main phase (:func:`as_compiled_input`), so it
builds nothing more. Evaluations, the network quantisation and the decoder run the same
functions eagerly, and so does everything where compilation is not available (no C++
compiler, an unsupported platform, or ``COOLCHIC_COMPILE=0`` in the environment). Both forms
compute the same values up to float rounding. The upsampling stack
(:mod:`coolchic.model.upsampling`) is compiled the same way.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from coolchic._env import cache_dir, cpu_signature

__all__ = [
    "FUSE_MIN_ELEMENTS",
    "as_compiled_input",
    "compile_cache_dir",
    "fusable",
    "use_persistent_cache",
]

logger = logging.getLogger(__name__)

#: Element counts from which a chain is compiled (the first argument: the latents, or the
#: finest grid for the upsampling): a 300x300 image and up. At 416x240 on a 2-core AVX2 host
#: a `fast` encode took 0.69–0.73x the time with a warm cache and 1.04x on the first encode of
#: that size (the builds); smaller frames gain less than the builds cost (BENCHMARKS.md).
FUSE_MIN_ELEMENTS = 90_000
#: Where ``torch.compile`` keeps its kernels (read by torch at each build).
COMPILE_CACHE_VARIABLE = "TORCHINDUCTOR_CACHE_DIR"


class _Fusable:
    """``function`` eagerly, or compiled when its first argument has enough elements."""

    def __init__(self, function: Callable[..., Tensor]) -> None:
        self.function = function
        self.__name__ = function.__name__
        self.__doc__ = function.__doc__
        self.compiled: Callable[..., Tensor] | None = None
        self.failed = not _compilation_enabled()

    def __call__(self, first: Tensor, *args: Any, force_compile: bool = False) -> Tensor:
        if self.failed or not (force_compile or _large_training_input(first)):
            return self.function(first, *args)
        if self.compiled is None:
            use_persistent_cache()
            self.compiled = torch.compile(self.function)
        try:
            return self.compiled(first, *args)
        except Exception as error:  # any compiler failure: fall back to eager, once
            message = str(error).splitlines()[0] if str(error) else ""
            logger.warning(
                "could not compile %s (%s: %s); running it eagerly",
                self.__name__,
                type(error).__name__,
                message,
            )
            self.failed = True
            return self.function(first, *args)


def compile_cache_dir() -> Path:
    """``~/.cache/coolchic/torch-compile/<CPU key>``: one folder per CPU model and feature set.

    torch's cache keys leave the CPU out, and its kernels are built for the CPU they run on,
    so machines sharing a home folder get a folder each.
    """
    key = hashlib.sha256(cpu_signature().encode()).hexdigest()[:16]
    return cache_dir() / "torch-compile" / key


def use_persistent_cache() -> None:
    """Point ``torch.compile``'s cache at :func:`compile_cache_dir`, unless
    ``$TORCHINDUCTOR_CACHE_DIR`` is set.

    torch's default, ``/tmp/torchinductor_<user>``, is emptied by a reboot, and under systemd's
    ``PrivateTmp=`` by every restart of the service; each large frame size then paid its builds
    again (about 90 s at 1152x768). Where that folder cannot be written (a read-only home, or
    no home at all: a container user without one), torch's default stays.
    """
    if COMPILE_CACHE_VARIABLE in os.environ:
        return
    try:
        folder = compile_cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
    except (OSError, RuntimeError):  # RuntimeError: Path.home() found no home
        return
    if os.access(folder, os.W_OK | os.X_OK):
        os.environ[COMPILE_CACHE_VARIABLE] = str(folder)


def _compilation_enabled() -> bool:
    return os.environ.get("COOLCHIC_COMPILE", "1") != "0"


def _large_training_input(first: Tensor) -> bool:
    return torch.is_grad_enabled() and first.numel() >= FUSE_MIN_ELEMENTS


def as_compiled_input(latents: Tensor) -> Tensor:
    """``latents``, marked differentiable where a training step runs the compiled chains.

    The networks-only phase feeds the chains true integers that take no gradient. Compiled
    graphs are specialised on which inputs take one, so that phase would build a second set
    of kernels (66 s of builds at 1920x1080) for a few hundred steps. Marked as a leaf that
    takes a gradient (which nothing reads), it runs the main phase's graphs instead, at the
    same speed per step (BENCHMARKS.md, 2026-12-06 04:00). Small frames run eagerly, where
    the unread gradient would only cost time, so they get ``latents`` unchanged.
    """
    if latents.requires_grad or not _compilation_enabled() or not _large_training_input(latents):
        return latents
    return latents.detach().requires_grad_()


def fusable(function: Callable[..., Tensor]) -> _Fusable:
    """Decorate an element-wise tensor function: compiled on large inputs, eager otherwise.

    Every argument that changes from call to call must be a tensor (a Python float would be
    compiled in as a constant and recompiled at each new value). ``force_compile=True``
    compiles whatever the size (for tests).
    """
    return _Fusable(function)
