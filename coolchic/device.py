"""Compute-device choice: ``auto`` picks CUDA, then Apple's MPS, then the CPU.

torch is imported inside the functions so that importing this module stays cheap.
"""

from __future__ import annotations

import logging
import os
import re
import sys

from coolchic.errors import DeviceError

logger = logging.getLogger(__name__)

DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
DEVICE_CHOICES = "auto|cpu|cuda|cuda:N|mps"


def check_device_spec(spec: str) -> str:
    """Validate the spelling of a device option (no torch needed)."""
    if not DEVICE_PATTERN.match(spec):
        raise ValueError(f"device {spec!r} is not one of {DEVICE_CHOICES}")
    return spec


def resolve_device(spec: str = "auto") -> str:
    """Turn a device option into a concrete torch device string, checking availability.

    Raises:
        DeviceError: an explicit device that this torch build or machine does not offer.
    """
    import torch

    check_device_spec(spec)
    cuda_ok = torch.cuda.is_available()
    mps_ok = torch.backends.mps.is_available()
    if spec == "auto":
        resolved = "cuda" if cuda_ok else "mps" if mps_ok else "cpu"
        logger.debug(
            "device auto -> %s (PYTORCH_ENABLE_MPS_FALLBACK=%s)",
            resolved,
            os.environ.get("PYTORCH_ENABLE_MPS_FALLBACK", "unset"),
        )
        return resolved
    if spec.startswith("cuda"):
        if not cuda_ok:
            raise DeviceError(
                f"device {spec} requested, but torch {torch.__version__} sees no CUDA device"
            )
        index = int(spec.split(":")[1]) if ":" in spec else 0
        if index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {spec} requested, but only {torch.cuda.device_count()} CUDA device(s)"
            )
        return spec
    if spec == "mps" and not mps_ok:
        reason = "not built with MPS" if not torch.backends.mps.is_built() else "no MPS device"
        raise DeviceError(f"device mps requested, but torch {torch.__version__} is {reason}")
    return spec


def set_torch_threads(threads: int | None, *, import_torch: bool = True) -> int:
    """Set torch's intra-op thread count explicitly (default: every core) and return it.

    With ``import_torch=False`` torch is only configured if something has imported it
    already: torch-free commands (``decode``) honour ``--threads`` without loading torch.
    """
    count = threads if threads is not None else max(1, os.cpu_count() or 1)
    if count < 1:
        raise ValueError(f"threads must be at least 1, found {count}")
    if import_torch or "torch" in sys.modules:
        import torch

        torch.set_num_threads(count)
    return count
