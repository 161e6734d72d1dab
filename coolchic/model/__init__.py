"""The Cool-chic model: latent grids, ARM, upsampling, synthesis, quantisation proxies.

Submodules, one concept each:

* :mod:`~coolchic.model.config` — :class:`ModelConfig`, the synthesis grammar (:class:`LayerSpec`);
* :mod:`~coolchic.model.layout` — what the model and the torch-free decoder share: grid
  sizes, the ARM context, the upsampling's polyphase form and initial filters;
* :mod:`~coolchic.model.complexity` — MAC per pixel and parameter counts;
* :mod:`~coolchic.model.latents` — hierarchical latent grids;
* :mod:`~coolchic.model.quantizer` — training-time proxies of ``round``;
* :mod:`~coolchic.model.arm` — contexts, ARM MLP, discretised-Laplace rate;
* :mod:`~coolchic.model.upsampling` — learned separable ×2 upsampling;
* :mod:`~coolchic.model.synthesis` — conv synthesis;
* :mod:`~coolchic.model.coolchic` — :class:`CoolChicModel`, the composition;
* :mod:`~coolchic.model.output` — rounding to the bit depth of the decoded file.

``config``, ``layout`` and ``complexity`` are torch-free, and so is importing this package:
the names below are loaded on first use, so that the decoder and the CLI can read an
architecture without importing torch. The other submodules are torch modules.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Where each exported name lives.
_HOMES = {
    "INFERENCE": "quantizer",
    "MODULE_NAMES": "layout",
    "CoolChicModel": "coolchic",
    "LayerSpec": "config",
    "MacBreakdown": "complexity",
    "ModelConfig": "config",
    "ModelOutput": "coolchic",
    "ModuleName": "layout",
    "NoiseKind": "quantizer",
    "ParameterCounts": "complexity",
    "QuantizerKind": "quantizer",
    "QuantizerSettings": "quantizer",
    "format_arm": "config",
    "format_synthesis": "config",
    "mac_per_pixel": "complexity",
    "parameter_counts": "complexity",
    "parse_arm": "config",
    "parse_synthesis": "config",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    """Load an exported name from its submodule on first use (PEP 562)."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
