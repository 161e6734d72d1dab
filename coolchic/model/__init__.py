"""The Cool-chic model core: latent grids, ARM, upsampling, synthesis, quantisation proxies.

Everything here is torch-only and free of I/O and UI. Submodules, one concept each:

* :mod:`~coolchic.model.config` — :class:`ModelConfig`, the synthesis grammar (:class:`LayerSpec`);
* :mod:`~coolchic.model.latents` — hierarchical latent grids;
* :mod:`~coolchic.model.quantizer` — training-time proxies of ``round``;
* :mod:`~coolchic.model.arm` — contexts, ARM MLP, discretised-Laplace rate;
* :mod:`~coolchic.model.upsampling` — learned separable ×2 upsampling;
* :mod:`~coolchic.model.synthesis` — conv synthesis;
* :mod:`~coolchic.model.coolchic` — :class:`CoolChicModel`, the composition;
* :mod:`~coolchic.model.output` — RGB / YUV 4:2:0 conversion of the synthesis output;
* :mod:`~coolchic.model.complexity` — MAC per pixel and parameter counts.
"""

from __future__ import annotations

from coolchic.model.complexity import MacBreakdown, ParameterCounts, mac_per_pixel, parameter_counts
from coolchic.model.config import (
    LayerSpec,
    ModelConfig,
    format_arm,
    format_synthesis,
    parse_arm,
    parse_synthesis,
)
from coolchic.model.coolchic import MODULE_NAMES, CoolChicModel, ModelOutput, ModuleName
from coolchic.model.quantizer import INFERENCE, NoiseKind, QuantizerKind, QuantizerSettings

__all__ = [
    "INFERENCE",
    "MODULE_NAMES",
    "CoolChicModel",
    "LayerSpec",
    "MacBreakdown",
    "ModelConfig",
    "ModelOutput",
    "ModuleName",
    "NoiseKind",
    "ParameterCounts",
    "QuantizerKind",
    "QuantizerSettings",
    "format_arm",
    "format_synthesis",
    "mac_per_pixel",
    "parameter_counts",
    "parse_arm",
    "parse_synthesis",
]
