"""Process-environment bootstrap that must run before anything imports torch."""

from __future__ import annotations

import logging
import os
import platform
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

MPS_FALLBACK_VARIABLE = "PYTORCH_ENABLE_MPS_FALLBACK"
#: Where ``torch.compile`` keeps the kernels it builds (torch's default is under ``/tmp``).
COMPILE_CACHE_VARIABLE = "TORCHINDUCTOR_CACHE_DIR"


def cache_dir() -> Path:
    """What coolchic builds for this machine: ``$XDG_CACHE_HOME/coolchic`` or
    ``~/.cache/coolchic`` (the C kernels, and ``torch-compile/`` for ``torch.compile``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "coolchic"


def is_apple_silicon() -> bool:
    """True on macOS running natively on arm64 (an x86 Python under Rosetta reports x86_64)."""
    return platform.system() == "Darwin" and platform.machine() == "arm64"


def bootstrap_env() -> None:
    """Keep ``torch.compile``'s kernels with coolchic's own cache; on Apple silicon, let ops
    that MPS lacks fall back to the CPU instead of raising. A value the user set is kept.

    The kernels of a large frame size take minutes to build (``docs/performance.md``). In
    torch's default place, ``/tmp``, a reboot or a temporary-files cleaner throws them away,
    and the next encode of that size (a daemon restarted after a reboot) builds them again.
    torch reads the MPS variable once, when it is imported, so that only helps if this runs
    first.
    """
    os.environ.setdefault(COMPILE_CACHE_VARIABLE, str(cache_dir() / "torch-compile"))
    if not is_apple_silicon():
        return
    os.environ.setdefault(MPS_FALLBACK_VARIABLE, "1")
    if "torch" in sys.modules:
        logger.warning(
            "torch was imported before coolchic; %s=%s may not take effect",
            MPS_FALLBACK_VARIABLE,
            os.environ[MPS_FALLBACK_VARIABLE],
        )
