"""Element-wise chains of the training step, compiled into single kernels on large tensors.

The soft-rounding proxy (two soft-roundings around the noise) and the Laplace rate are
chains of some twenty element-wise operators over every latent; in eager PyTorch each one is
a pass over memory, forward and backward. ``torch.compile`` fuses each chain into one kernel:
at 1920x1080 (2.8 M latents) the two chains' forward and backward went from ~400 ms to
~50 ms a step on two cores (BENCHMARKS.md, "training step").

Compilation costs a minute or two of C++ builds the first time a frame size is seen on a
machine (``torch.compile`` keeps them in its on-disk cache, so later processes load them in
seconds), so it is used only where a `fast` encode gains back more than that: training steps
that differentiate the chain's input (the latents) from :data:`FUSE_MIN_ELEMENTS` elements
on, those of the networks-only phase (latents fixed) from
:data:`FUSE_MIN_ELEMENTS_FIXED_INPUT`. Evaluations, the network quantisation and the decoder
run the same functions eagerly, and
so does everything where compilation is not available (no C++ compiler, an unsupported
platform, or ``COOLCHIC_COMPILE=0`` in the environment). Both forms compute the same values
up to float rounding. The upsampling stack (:mod:`coolchic.model.upsampling`) is compiled
the same way.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

__all__ = ["FUSE_MIN_ELEMENTS", "FUSE_MIN_ELEMENTS_FIXED_INPUT", "fusable"]

logger = logging.getLogger(__name__)

#: Element counts from which a chain is compiled (the first argument: the latents, or the
#: finest grid for the upsampling): a 300x300 image and up. At 416x240 on a 2-core AVX2 host
#: a `fast` encode took 0.69–0.73x the time with a warm cache and 1.04x on the first encode of
#: that size (the builds); smaller frames gain less than the builds cost (BENCHMARKS.md).
FUSE_MIN_ELEMENTS = 90_000
#: The same for a first argument that is not differentiated (the networks-only phase, latents
#: fixed): its graphs are built separately and serve only that short phase, so they pay on
#: larger frames only. This is the one threshold of the earlier rule, measured at 1152x768
#: and 1920x1080, kept so that those frames compile as before.
FUSE_MIN_ELEMENTS_FIXED_INPUT = 200_000


class _Fusable:
    """``function`` eagerly, or compiled when its first argument has enough elements."""

    def __init__(self, function: Callable[..., Tensor]) -> None:
        self.function = function
        self.__name__ = function.__name__
        self.__doc__ = function.__doc__
        self.compiled: Callable[..., Tensor] | None = None
        self.failed = os.environ.get("COOLCHIC_COMPILE", "1") == "0"

    def __call__(self, first: Tensor, *args: Any, force_compile: bool = False) -> Tensor:
        threshold = FUSE_MIN_ELEMENTS if first.requires_grad else FUSE_MIN_ELEMENTS_FIXED_INPUT
        large = torch.is_grad_enabled() and first.numel() >= threshold
        if self.failed or not (force_compile or large):
            return self.function(first, *args)
        if self.compiled is None:
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


def fusable(function: Callable[..., Tensor]) -> _Fusable:
    """Decorate an element-wise tensor function: compiled on large inputs, eager otherwise.

    Every argument that changes from call to call must be a tensor (a Python float would be
    compiled in as a constant and recompiled at each new value). ``force_compile=True``
    compiles whatever the size (for tests).
    """
    return _Fusable(function)
