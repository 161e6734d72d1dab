"""Architecture of a Cool-chic decoder: synthesis layer grammar, ARM widths, model config.

The synthesis is described by a comma-separated list of layers, each
``<out_channels>-<kernel>-<kind>-<nonlinearity>``, e.g. the v2 default
``40-1-linear-relu,3-1-linear-relu,3-3-residual-relu,3-3-residual-none``. ``X`` as
``out_channels`` stands for the number of output channels of the image (3). The string is
parsed once, at the edge, into :class:`LayerSpec` values; everything downstream (model,
bitstream, complexity) works on those.

The ARM hidden widths are a comma-separated list of integers (``24,24``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, get_args

__all__ = [
    "DEFAULT_ARM",
    "DEFAULT_SYNTHESIS",
    "MAX_ARM_HIDDEN_LAYERS",
    "MAX_ARM_WIDTH",
    "MAX_COARSER_CONTEXTS",
    "MAX_HYPER_GRIDS",
    "MAX_IFCE_FEATURES",
    "MAX_N_CTX_ROWCOL",
    "MAX_N_GRIDS",
    "MAX_OUT_CHANNELS",
    "MAX_PRECONCAT_KERNEL",
    "MAX_SYNTHESIS_CHANNELS",
    "MAX_SYNTHESIS_KERNEL",
    "MAX_SYNTHESIS_LAYERS",
    "MAX_UPSAMPLING_KERNEL",
    "MIN_UPSAMPLING_KERNEL",
    "LayerKind",
    "LayerSpec",
    "ModelConfig",
    "Nonlinearity",
    "format_arm",
    "format_synthesis",
    "parse_arm",
    "parse_synthesis",
]

LayerKind = Literal["linear", "residual"]
Nonlinearity = Literal["relu", "none"]

_LAYER_KINDS: tuple[str, ...] = get_args(LayerKind)
_NONLINEARITIES: tuple[str, ...] = get_args(Nonlinearity)

# Limits a decoder accepts. They bound what a (possibly hostile) header can make us allocate.
MAX_N_GRIDS = 10
MAX_N_CTX_ROWCOL = 4
MAX_COARSER_CONTEXTS = 3
MAX_IFCE_FEATURES = 8
MAX_HYPER_GRIDS = 4
MAX_ARM_WIDTH = 256
MAX_ARM_HIDDEN_LAYERS = 8
MAX_SYNTHESIS_LAYERS = 16
MAX_SYNTHESIS_CHANNELS = 512
MAX_SYNTHESIS_KERNEL = 15
MAX_OUT_CHANNELS = 4
MIN_UPSAMPLING_KERNEL = 4
MAX_UPSAMPLING_KERNEL = 16
MAX_PRECONCAT_KERNEL = 15

#: Synthesis of Cool-chic v2: 7 → 40 → 3 → 3 (res) → 3 (res).
DEFAULT_SYNTHESIS = "40-1-linear-relu,3-1-linear-relu,3-3-residual-relu,3-3-residual-none"
#: ARM hidden layers of Cool-chic v2 (`--layers_arm=24,24`).
DEFAULT_ARM = "24,24"

#: Placeholder for "as many channels as the image has" in the synthesis grammar.
_OUT_CHANNELS_PLACEHOLDER = "X"


def _bad(field_name: str, expected: str, found: object) -> ValueError:
    return ValueError(f"{field_name}: expected {expected}, found {found!r}")


@dataclass(frozen=True)
class LayerSpec:
    """One synthesis layer: a ``kernel`` x ``kernel`` conv, stride 1, replicate padding, bias.

    Attributes:
        out_channels: number of output feature maps, 1 … ``MAX_SYNTHESIS_CHANNELS``.
        kernel: odd spatial size, 1 … ``MAX_SYNTHESIS_KERNEL``.
        kind: ``"linear"`` (plain conv) or ``"residual"`` (``y = conv(x) + x``; needs
            in == out channels, checked by :class:`ModelConfig`).
        nonlinearity: ``"relu"`` or ``"none"``, applied after the residual addition.
    """

    out_channels: int
    kernel: int
    kind: LayerKind
    nonlinearity: Nonlinearity

    def __post_init__(self) -> None:
        if not 1 <= self.out_channels <= MAX_SYNTHESIS_CHANNELS:
            raise _bad(
                "synthesis out_channels",
                f"an integer in 1..{MAX_SYNTHESIS_CHANNELS}",
                self.out_channels,
            )
        if not (1 <= self.kernel <= MAX_SYNTHESIS_KERNEL and self.kernel % 2 == 1):
            raise _bad(
                "synthesis kernel", f"an odd integer in 1..{MAX_SYNTHESIS_KERNEL}", self.kernel
            )
        if self.kind not in _LAYER_KINDS:
            raise _bad("synthesis layer kind", f"one of {_LAYER_KINDS}", self.kind)
        if self.nonlinearity not in _NONLINEARITIES:
            raise _bad("synthesis non-linearity", f"one of {_NONLINEARITIES}", self.nonlinearity)

    def format(self) -> str:
        """This layer in the grammar, e.g. ``"3-3-residual-none"``."""
        return f"{self.out_channels}-{self.kernel}-{self.kind}-{self.nonlinearity}"


def _parse_int(text: str, field_name: str) -> int:
    stripped = text.strip()
    if not (stripped.isascii() and stripped.isdigit()):
        raise _bad(field_name, "a positive decimal integer", text)
    return int(stripped)


def _parse_layer(text: str, out_channels: int) -> LayerSpec:
    parts = text.strip().split("-")
    if len(parts) != 4:
        raise _bad(
            "synthesis layer",
            "'<out_channels>-<kernel>-<linear|residual>-<relu|none>'",
            text,
        )
    out_text, kernel_text, kind, nonlinearity = (part.strip() for part in parts)
    out = (
        out_channels
        if out_text.upper() == _OUT_CHANNELS_PLACEHOLDER
        else _parse_int(out_text, "synthesis out_channels")
    )
    kernel = _parse_int(kernel_text, "synthesis kernel")
    if kind not in _LAYER_KINDS:
        raise _bad("synthesis layer kind", f"one of {_LAYER_KINDS}", kind)
    if nonlinearity not in _NONLINEARITIES:
        raise _bad("synthesis non-linearity", f"one of {_NONLINEARITIES}", nonlinearity)
    return LayerSpec(out, kernel, kind, nonlinearity)  # type: ignore[arg-type]


def parse_synthesis(text: str, *, out_channels: int = 3) -> tuple[LayerSpec, ...]:
    """Parse ``"40-1-linear-relu,3-3-residual-none"`` into layer specs.

    Args:
        text: comma-separated layers ``<out>-<kernel>-<linear|residual>-<relu|none>``;
            ``out`` may be ``X``, replaced by ``out_channels``.
        out_channels: value substituted for ``X``.

    Returns:
        One :class:`LayerSpec` per layer, in order (at least one).

    Raises:
        ValueError: malformed text, naming the offending layer or field.
    """
    if not text.strip():
        raise _bad("synthesis", "at least one layer", text)
    layers = tuple(_parse_layer(part, out_channels) for part in text.split(","))
    if len(layers) > MAX_SYNTHESIS_LAYERS:
        raise _bad("synthesis", f"at most {MAX_SYNTHESIS_LAYERS} layers", len(layers))
    return layers


def format_synthesis(layers: tuple[LayerSpec, ...] | list[LayerSpec]) -> str:
    """Inverse of :func:`parse_synthesis` (``X`` is written as its number)."""
    return ",".join(layer.format() for layer in layers)


def parse_arm(text: str) -> tuple[int, ...]:
    """Parse the ARM hidden widths ``"24,24"`` (an empty string means no hidden layer).

    Raises:
        ValueError: a width that is not an integer in 1..``MAX_ARM_WIDTH``, or too many layers.
    """
    if not text.strip():
        return ()
    widths = tuple(_parse_int(part, "ARM hidden width") for part in text.split(","))
    _check_arm(widths)
    return widths


def format_arm(widths: tuple[int, ...]) -> str:
    """Inverse of :func:`parse_arm`."""
    return ",".join(str(width) for width in widths)


def _check_arm(widths: tuple[int, ...]) -> None:
    if len(widths) > MAX_ARM_HIDDEN_LAYERS:
        raise _bad("arm_hidden", f"at most {MAX_ARM_HIDDEN_LAYERS} layers", len(widths))
    for width in widths:
        if not (isinstance(width, int) and 1 <= width <= MAX_ARM_WIDTH):
            raise _bad("arm_hidden", f"widths in 1..{MAX_ARM_WIDTH}", widths)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a Cool-chic decoder (all of it is written to the bitstream).

    Attributes:
        n_grids: number of latent grids, 1 channel each, grid i at 1/2^i resolution.
        n_ctx_rowcol: N, the ARM context is the causal half of a (2N+1)^2 window (2N^2+2N values).
        arm_hidden: widths of the ARM hidden layers (a layer with in == out is residual).
        synthesis: synthesis layers; the last one must output ``out_channels``.
        out_channels: channels produced by the synthesis (3 for RGB / YUV).
        upsampling_kernel: even size K of the per-level separable transposed-conv filter.
        preconcat_kernel: odd size of the per-level pre-concatenation filter; 0 disables it.
        latent_gain: encoder-side gain g; the quantised value is ``round(g * y)``. Not
            transmitted (the decoder only sees integers).
        coarser_contexts: P, how many coarser grids add their co-located latent to the ARM
            context of each latent (0: the grids are modelled independently). Cool-chic 5's
            inter-feature context (IFCE) plays this role.
        arm_stabiliser: a linear map from the ARM's context to ``(μ, s)``, added to its
            output: Cool-chic 5's ARM "stabiliser" (format version 4).
        synthesis_stabiliser: a 1x1 linear map from the synthesis input (the upsampled
            grids) to its output, added to the last layer's output: Cool-chic 5's synthesis
            "stabiliser" (format version 4).
        ifce_features: C_f, Cool-chic 5's inter-feature context: the ARM context of each of
            the three finest grids also gets C_f values, a per-grid linear map of
            the co-located values of every coarser grid (hyper-latents included); other grids
            get zeros there. Excludes ``coarser_contexts``. Format version 5.
        hyper_grids: H, Cool-chic 5's hyper-latents: H more grids at the resolutions of the
            H coarsest latent grids, coded like the others but read only by the IFCE (never
            upsampled). Needs ``ifce_features``. Format version 5.
    """

    n_grids: int = 7
    n_ctx_rowcol: int = 3
    arm_hidden: tuple[int, ...] = (24, 24)
    synthesis: tuple[LayerSpec, ...] = field(
        default_factory=lambda: parse_synthesis(DEFAULT_SYNTHESIS)
    )
    out_channels: int = 3
    upsampling_kernel: int = 8
    preconcat_kernel: int = 7
    latent_gain: float = 16.0
    coarser_contexts: int = 0
    arm_stabiliser: bool = False
    synthesis_stabiliser: bool = False
    ifce_features: int = 0
    hyper_grids: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.n_grids <= MAX_N_GRIDS:
            raise _bad("n_grids", f"an integer in 1..{MAX_N_GRIDS}", self.n_grids)
        if not 1 <= self.n_ctx_rowcol <= MAX_N_CTX_ROWCOL:
            raise _bad("n_ctx_rowcol", f"an integer in 1..{MAX_N_CTX_ROWCOL}", self.n_ctx_rowcol)
        if not isinstance(self.arm_hidden, tuple):
            raise _bad("arm_hidden", "a tuple of ints", self.arm_hidden)
        _check_arm(self.arm_hidden)
        if not 1 <= self.out_channels <= MAX_OUT_CHANNELS:
            raise _bad("out_channels", f"an integer in 1..{MAX_OUT_CHANNELS}", self.out_channels)
        if not (
            MIN_UPSAMPLING_KERNEL <= self.upsampling_kernel <= MAX_UPSAMPLING_KERNEL
            and self.upsampling_kernel % 2 == 0
        ):
            raise _bad(
                "upsampling_kernel",
                f"an even integer in {MIN_UPSAMPLING_KERNEL}..{MAX_UPSAMPLING_KERNEL}",
                self.upsampling_kernel,
            )
        if not (
            self.preconcat_kernel == 0
            or (1 <= self.preconcat_kernel <= MAX_PRECONCAT_KERNEL and self.preconcat_kernel % 2)
        ):
            raise _bad(
                "preconcat_kernel",
                f"0 or an odd integer in 1..{MAX_PRECONCAT_KERNEL}",
                self.preconcat_kernel,
            )
        if not 0 <= self.coarser_contexts <= MAX_COARSER_CONTEXTS:
            raise _bad(
                "coarser_contexts",
                f"an integer in 0..{MAX_COARSER_CONTEXTS}",
                self.coarser_contexts,
            )
        if not 0 <= self.ifce_features <= MAX_IFCE_FEATURES:
            raise _bad("ifce_features", f"an integer in 0..{MAX_IFCE_FEATURES}", self.ifce_features)
        if self.ifce_features and self.coarser_contexts:
            raise _bad("ifce_features", "0 with coarser_contexts", self.ifce_features)
        if not 0 <= self.hyper_grids <= min(MAX_HYPER_GRIDS, self.n_grids - 1):
            raise _bad(
                "hyper_grids",
                f"an integer in 0..{min(MAX_HYPER_GRIDS, self.n_grids - 1)}",
                self.hyper_grids,
            )
        if self.hyper_grids and not self.ifce_features:
            raise _bad("hyper_grids", "0 without ifce_features (nothing would read them)", 1)
        for name in ("arm_stabiliser", "synthesis_stabiliser"):
            if not isinstance(getattr(self, name), bool):
                raise _bad(name, "a bool", getattr(self, name))
        if not (math.isfinite(self.latent_gain) and self.latent_gain > 0):
            raise _bad("latent_gain", "a finite number > 0", self.latent_gain)
        self._check_synthesis()

    def _check_synthesis(self) -> None:
        if not isinstance(self.synthesis, tuple) or not self.synthesis:
            raise _bad("synthesis", "a non-empty tuple of LayerSpec", self.synthesis)
        if len(self.synthesis) > MAX_SYNTHESIS_LAYERS:
            raise _bad("synthesis", f"at most {MAX_SYNTHESIS_LAYERS} layers", len(self.synthesis))
        in_channels = self.n_grids
        for index, layer in enumerate(self.synthesis):
            if not isinstance(layer, LayerSpec):
                raise _bad(f"synthesis layer {index}", "a LayerSpec", layer)
            if layer.kind == "residual" and layer.out_channels != in_channels:
                raise _bad(
                    f"synthesis layer {index} ({layer.format()})",
                    f"a residual layer with out_channels == in_channels == {in_channels}",
                    layer.out_channels,
                )
            in_channels = layer.out_channels
        if in_channels != self.out_channels:
            raise _bad(
                "synthesis last layer out_channels",
                f"out_channels == {self.out_channels}",
                in_channels,
            )

    @property
    def n_contexts(self) -> int:
        """ARM input width: ``2N² + 2N`` neighbours (24 for N = 3), then P coarser values or
        C_f inter-feature values."""
        return (
            2 * self.n_ctx_rowcol * (self.n_ctx_rowcol + 1)
            + self.coarser_contexts
            + self.ifce_features
        )

    @property
    def n_context_planes(self) -> int:
        """Values of the ARM context that come from other grids (P or C_f)."""
        return self.coarser_contexts + self.ifce_features

    @property
    def n_coded_grids(self) -> int:
        """Grids the ARM codes: the latent grids, then the hyper-latent grids."""
        return self.n_grids + self.hyper_grids

    @property
    def synthesis_text(self) -> str:
        """The synthesis in the layer grammar (see :func:`format_synthesis`)."""
        return format_synthesis(self.synthesis)
