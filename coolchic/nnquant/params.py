"""The network parameters as the stream carries them: six groups of integers (numpy only).

Each ``(module, kind)`` group of :data:`~coolchic.bitstream.constants.NN_GROUPS` (ARM
weights and biases, upsampling filters, synthesis weights and biases) has one step
``2^-e``: a parameter θ travels as ``q = round(θ · 2^e)`` (half to even). The decoder knows
the fixed starting value of the upsampling filters, so those travel as the difference from
that start quantised with the same step (:func:`predicted_integers`): small integers, fewer
bits. :mod:`coolchic.bitstream.nn_params` codes the differences, one code (an exp-Golomb order
or a Rice parameter) per group.

:class:`QuantizedNetworks` is the one container of the six groups: the encoder's step search
(:mod:`coolchic.nnquant.search`) fills it, the stream writer codes it, the decoder reads it
back and takes the integer ARM and the float filters from it. No torch here, so that the
decoder can use it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from coolchic.bitstream.constants import MAX_STEP_EXPONENT, NN_GROUPS
from coolchic.bitstream.fixed_point import FixedPointArm, FixedPointIfce, QuantizedLayer
from coolchic.bitstream.nn_params import (
    GroupCode,
    GroupKey,
    best_code,
    decode_quantized,
    encode_quantized,
)
from coolchic.model.config import ModelConfig
from coolchic.model.layout import ifce_inputs, upsampling_initial_values

if TYPE_CHECKING:
    from coolchic.bitstream.header import GroupCoding

__all__ = [
    "IFCE_PREFIX",
    "STABILISER",
    "ParameterSpec",
    "QuantizedGroup",
    "QuantizedNetworks",
    "coded_flat",
    "dequantize",
    "parameter_layout",
    "predicted_integers",
    "quantize",
]

#: The name of a stabiliser's weight, in the ARM and in the synthesis.
STABILISER = "stabiliser.weight"
#: How the ARM's inter-feature maps are named: ``ifce.maps.<grid>.weight`` and ``.bias``.
IFCE_PREFIX = "ifce.maps."

#: A parameter's name inside its module (``torch.nn.Module.named_parameters`` spelling) and
#: its shape.
ParameterSpec = tuple[str, tuple[int, ...]]


# --------------------------------------------------------------------------------------------
# Which parameters, in which order


def _arm_parameters(config: ModelConfig) -> list[ParameterSpec]:
    specs: list[ParameterSpec] = []
    width = config.n_contexts
    for index, out in enumerate(config.arm_hidden):
        specs += [(f"hidden.{index}.weight", (out, width)), (f"hidden.{index}.bias", (out,))]
        width = out
    specs += [("output.weight", (2, width)), ("output.bias", (2,))]
    if config.arm_stabiliser:
        specs.append((STABILISER, (2, config.n_contexts)))
    if config.ifce_features:  # the inter-feature maps (format version 5) end the ARM groups
        for index, n_in in enumerate(ifce_inputs(config.n_grids, config.hyper_grids)):
            specs += [
                (f"{IFCE_PREFIX}{index}.weight", (config.ifce_features, n_in)),
                (f"{IFCE_PREFIX}{index}.bias", (config.ifce_features,)),
            ]
    return specs


def _upsampling_parameters(config: ModelConfig) -> list[ParameterSpec]:
    n_levels = config.n_grids - 1
    specs: list[ParameterSpec] = [("transposed_half", (n_levels, config.upsampling_kernel // 2))]
    if config.preconcat_kernel:
        specs.append(("preconcat_half", (n_levels, (config.preconcat_kernel + 1) // 2)))
    return specs


def _synthesis_parameters(config: ModelConfig) -> list[ParameterSpec]:
    specs: list[ParameterSpec] = []
    width = config.n_grids
    for index, layer in enumerate(config.synthesis):
        shape = (layer.out_channels, width, layer.kernel, layer.kernel)
        bias = (layer.out_channels,)
        specs += [(f"layers.{index}.weight", shape), (f"layers.{index}.bias", bias)]
        width = layer.out_channels
    if config.synthesis_stabiliser:
        specs.append((STABILISER, (width, config.n_grids, 1, 1)))
    return specs


def parameter_layout(config: ModelConfig) -> dict[GroupKey, tuple[ParameterSpec, ...]]:
    """The network parameters of each ``(module, kind)`` group, in coding order.

    Keys are the six :data:`~coolchic.bitstream.constants.NN_GROUPS`, in that order; a group
    is its module's parameters of that kind (biases end in ``.bias``, every other parameter is
    a weight) in declaration order, which is the order the parameter section carries them in.
    Groups without parameters (the upsampling biases) are empty. The torch model looks its
    parameters up by these names, the decoder builds its networks from them.
    """
    by_module = {
        "arm": _arm_parameters(config),
        "upsampling": _upsampling_parameters(config),
        "synthesis": _synthesis_parameters(config),
    }
    return {
        (module, kind): tuple(spec for spec in by_module[module] if _kind(spec[0]) == kind)
        for module, kind in NN_GROUPS
    }


def _kind(name: str) -> str:
    return "bias" if name.rsplit(".", 1)[-1] == "bias" else "weight"


# --------------------------------------------------------------------------------------------
# Steps and predictions


def _check_exp(exp: int) -> int:
    if isinstance(exp, bool) or not isinstance(exp, int | np.integer):
        raise TypeError(f"step exponent: expected an integer, found {exp!r}")
    if not 0 <= exp <= MAX_STEP_EXPONENT:
        raise ValueError(f"step exponent: expected 0..{MAX_STEP_EXPONENT}, found {exp}")
    return int(exp)


def quantize(values: Any, exp: int) -> np.ndarray:
    """``q = round(θ · 2^exp)`` (half to even), the integers sent for step ``2^-exp``.

    Args:
        values: real array, any shape, finite (a CPU tensor without gradient also works).
        exp: step exponent, 0..31.

    Returns:
        int64 array of the same shape. It may exceed what the format carries: check with
        :func:`~coolchic.bitstream.nn_params.fits`.

    Raises:
        ValueError: non-finite values or an exponent out of range.
    """
    exp = _check_exp(exp)
    array = np.asarray(values).astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError("values: expected finite parameters, found NaN or infinity")
    scaled = np.rint(np.ldexp(array, exp))
    if scaled.size and float(np.abs(scaled).max()) >= 2.0**62:
        raise ValueError(f"values: too large for step 2^-{exp} (|q| >= 2^62)")
    return scaled.astype(np.int64)


def dequantize(q: Any, exp: int) -> np.ndarray:
    """``q · 2^-exp`` as float32, the value the encoder's float32 model holds (exact for
    ``|q| <= 2^24``)."""
    exp = _check_exp(exp)
    array = np.asarray(q)
    if array.dtype.kind not in "iu":
        raise TypeError(f"q: expected an integer array, found dtype {array.dtype}")
    return np.ldexp(array.astype(np.float64), -exp).astype(np.float32)


def predicted_integers(
    config: ModelConfig, module: str, kind: str, exponent: int
) -> list[np.ndarray]:
    """What the decoder predicts for each array of a group before reading the stream.

    Parameters with a fixed starting value (the upsampling's bicubic and Dirac filters) are
    predicted by that value quantised with the group's step, the others by 0; the stream
    carries the differences. Trained filters stay near their start, so the differences are
    small: about 40 bits fewer per stream on 192x128 images, where the 48 upsampling taps cost
    ~380 bits as plain integers.

    Returns:
        One int64 array per parameter of the group, in coding order.
    """
    initial = (
        upsampling_initial_values(config.n_grids, config.upsampling_kernel, config.preconcat_kernel)
        if module == "upsampling"
        else {}
    )
    return [
        quantize(initial[name], exponent) if name in initial else np.zeros(shape, dtype=np.int64)
        for name, shape in parameter_layout(config)[(module, kind)]
    ]


def _concat(arrays: Sequence[np.ndarray]) -> np.ndarray:
    if not arrays:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([array.ravel() for array in arrays])


def coded_flat(integers: Sequence[np.ndarray], predictions: Sequence[np.ndarray]) -> np.ndarray:
    """``q − prediction`` of every array of a group, flattened in coding order."""
    return _concat([q - p for q, p in zip(integers, predictions, strict=True)])


# --------------------------------------------------------------------------------------------
# The container


@dataclass(frozen=True, eq=False)
class QuantizedGroup:
    """One quantised group: integers ``q`` (float value ``q · 2^-exponent``).

    The bitstream carries ``q − prediction`` (:meth:`coded`), where the prediction is what the
    decoder knows before reading anything (:func:`predicted_integers`); ``code`` and
    ``n_bits`` describe that coded form.
    """

    module: str
    kind: str
    names: tuple[str, ...]
    integers: tuple[np.ndarray, ...]
    exponent: int
    predictions: tuple[np.ndarray, ...]
    code: GroupCode
    n_bits: int

    @classmethod
    def best_coded(
        cls,
        key: GroupKey,
        names: tuple[str, ...],
        integers: tuple[np.ndarray, ...],
        exponent: int,
        predictions: tuple[np.ndarray, ...],
    ) -> QuantizedGroup:
        """The group with the code that writes it in the fewest bits (:func:`best_code`)."""
        code, n_bits = best_code(coded_flat(integers, predictions))
        return cls(*key, names, integers, exponent, predictions, code, n_bits)

    @classmethod
    def empty(cls, key: GroupKey, exponent: int = 0) -> QuantizedGroup:
        """A group without parameters (the upsampling biases)."""
        return cls(*key, (), (), exponent, (), GroupCode(), 0)

    def coded(self) -> tuple[np.ndarray, ...]:
        """The integers as written: ``q − prediction`` per array."""
        return tuple(q - p for q, p in zip(self.integers, self.predictions, strict=True))

    def flat(self) -> np.ndarray:
        """The integers ``q`` of every array, flattened in coding order."""
        return _concat(self.integers)

    def values(self) -> dict[str, np.ndarray]:
        """The de-quantised parameters by name, float64 as the encoder's float32 model holds
        them (exact for every step the encoder picks)."""
        return {
            name: dequantize(q, self.exponent).astype(np.float64)
            for name, q in zip(self.names, self.integers, strict=True)
        }


@dataclass(frozen=True, eq=False)
class QuantizedNetworks:
    """The six parameter groups of the networks, in :data:`NN_GROUPS` order.

    Iterating gives the groups in coding order; ``networks[("arm", "weight")]`` one group.
    """

    groups: tuple[QuantizedGroup, ...]

    def __post_init__(self) -> None:
        found = [(group.module, group.kind) for group in self.groups]
        if found != list(NN_GROUPS):
            raise ValueError(f"groups: expected {list(NN_GROUPS)} in that order, found {found}")

    def __iter__(self) -> Iterator[QuantizedGroup]:
        return iter(self.groups)

    def __getitem__(self, key: GroupKey) -> QuantizedGroup:
        return self.groups[NN_GROUPS.index(key)]

    @property
    def n_bits(self) -> int:
        """Length of the parameter section's codes, padding excluded."""
        return sum(group.n_bits for group in self.groups)

    def arm(self) -> FixedPointArm:
        """The integer ARM the latents are coded with, from the two ARM groups.

        Raises:
            As :meth:`~coolchic.bitstream.fixed_point.FixedPointArm.from_quantized`.
        """
        weights, biases = self[("arm", "weight")], self[("arm", "bias")]
        layer_weights = [
            q
            for name, q in zip(weights.names, weights.integers, strict=True)
            if name != STABILISER and not name.startswith(IFCE_PREFIX)
        ]
        layer_biases = [
            q
            for name, q in zip(biases.names, biases.integers, strict=True)
            if not name.startswith(IFCE_PREFIX)
        ]
        stabiliser = [
            q for name, q in zip(weights.names, weights.integers, strict=True) if name == STABILISER
        ]
        layers = [
            QuantizedLayer(weight, bias, weights.exponent, biases.exponent)
            for weight, bias in zip(layer_weights, layer_biases, strict=True)
        ]
        if not layers:
            raise ValueError("ARM groups: expected at least the output layer, found none")
        return FixedPointArm.from_quantized(
            layers[:-1],
            layers[-1],
            stabiliser=(stabiliser[0], weights.exponent) if stabiliser else None,
        )

    def ifce(self) -> FixedPointIfce | None:
        """The integer inter-feature context, from the ``ifce.maps.*`` arrays of the ARM
        groups (their steps); None when the architecture has none.

        Raises:
            As :meth:`~coolchic.bitstream.fixed_point.FixedPointIfce.from_quantized`.
        """
        weights, biases = self[("arm", "weight")], self[("arm", "bias")]
        maps = [
            q
            for name, q in zip(weights.names, weights.integers, strict=True)
            if name.startswith(IFCE_PREFIX)
        ]
        offsets = [
            q
            for name, q in zip(biases.names, biases.integers, strict=True)
            if name.startswith(IFCE_PREFIX)
        ]
        if not maps:
            return None
        return FixedPointIfce.from_quantized(
            [
                QuantizedLayer(weight, bias, weights.exponent, biases.exponent)
                for weight, bias in zip(maps, offsets, strict=True)
            ]
        )

    def encode(self) -> tuple[bytes, dict[GroupKey, GroupCode]]:
        """The parameter section and the code of each group (for the header)."""
        coded: dict[str, dict[str, list[np.ndarray]]] = {}
        for group in self.groups:
            if group.integers:
                coded.setdefault(group.module, {})[group.kind] = list(group.coded())
        return encode_quantized(coded)

    @classmethod
    def decode(
        cls, data: bytes, config: ModelConfig, coding: Sequence[GroupCoding]
    ) -> QuantizedNetworks:
        """Read the parameter section back, the predictions of the fixed filters added.

        Args:
            data: the section.
            config: the architecture, which gives every array's name and shape.
            coding: the step exponent and code of each group, from the header.

        Raises:
            BitstreamError, LimitExceeded: as
                :func:`~coolchic.bitstream.nn_params.decode_quantized`.
        """
        layout = parameter_layout(config)
        shapes: dict[str, dict[str, list[tuple[int, ...]]]] = {}
        for (module, kind), specs in layout.items():
            if specs:
                shapes.setdefault(module, {})[kind] = [shape for _, shape in specs]
        codes = {key: c.code for key, c in zip(NN_GROUPS, coding, strict=True)}
        sent = decode_quantized(data, shapes, codes)
        groups = []
        for ((module, kind), specs), group_coding in zip(layout.items(), coding, strict=True):
            if not specs:
                groups.append(QuantizedGroup.empty((module, kind), group_coding.exp))
                continue
            differences = sent[module][kind]
            predictions = tuple(predicted_integers(config, module, kind, group_coding.exp))
            n_bits = group_coding.code.n_bits(_concat(differences))
            groups.append(
                QuantizedGroup(
                    module,
                    kind,
                    tuple(name for name, _ in specs),
                    tuple(d + p for d, p in zip(differences, predictions, strict=True)),
                    group_coding.exp,
                    predictions,
                    group_coding.code,
                    n_bits,
                )
            )
        return cls(tuple(groups))
