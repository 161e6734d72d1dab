"""Process-environment bootstrap that must run before anything imports torch, and where coolchic
keeps what it builds."""

from __future__ import annotations

import logging
import os
import platform
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

MPS_FALLBACK_VARIABLE = "PYTORCH_ENABLE_MPS_FALLBACK"


def cache_dir() -> Path:
    """Where coolchic keeps what it builds for this machine: ``$XDG_CACHE_HOME/coolchic`` or
    ``~/.cache/coolchic`` (the C kernels, and ``torch-compile/`` for ``torch.compile``'s)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "coolchic"


def cpu_signature() -> str:
    """What code built for this CPU (``-march=native``) depends on: its model and feature flags.

    Part of every cache key, so that machines sharing a home folder (a cluster's workers on
    different CPUs) never load each other's builds.
    """
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return "\n".join(
            sorted({line for line in lines if line.startswith(("model name", "flags"))})
        )
    except OSError:
        return platform.processor() + platform.machine()


def is_apple_silicon() -> bool:
    """True on macOS running natively on arm64 (an x86 Python under Rosetta reports x86_64)."""
    return platform.system() == "Darwin" and platform.machine() == "arm64"


def bootstrap_env() -> None:
    """Let ops that MPS lacks fall back to the CPU instead of raising, unless the user chose.

    torch reads the variable once, when it is imported, so this only helps if it runs first.
    """
    if not is_apple_silicon():
        return
    os.environ.setdefault(MPS_FALLBACK_VARIABLE, "1")
    if "torch" in sys.modules:
        logger.warning(
            "torch was imported before coolchic; %s=%s may not take effect",
            MPS_FALLBACK_VARIABLE,
            os.environ[MPS_FALLBACK_VARIABLE],
        )
