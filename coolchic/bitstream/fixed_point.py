"""Bit-exact integer ARM and the shipped μ/scale table (Cool-chic v5's fixed point).

The latent range coder must see identical Laplace parameters ``(μ, b)`` at the encoder and at
every decoder, on every platform. So the ARM that produces them runs on integers only:

* a weight with integer ``q`` and step ``2^-e`` becomes ``W = q << (16 − e)`` (16 fractional
  bits); a bias ``B = q << (32 − e)`` (32 fractional bits);
* a hidden layer with in == out is residual, ``y = Wx + b + x``: the residual is folded into the
  weights by adding ``2^16·I``;
* the constant −4 of the log-scale, ``b = exp(clamp(s − 4, −5, 5))``, is folded into the bias of
  output 1 (``−4·2^32``);
* forward: ``x = contexts << 16``; each hidden layer ``x = max(x·W + B, 0) >> 16``; output
  ``o = x·W + B`` (32 fractional bits) ``>> 24`` → μ and ``ln b`` in units of 1/256 (``>>`` is an
  arithmetic shift, i.e. floor); with a stabiliser (format version 4) its weights ``S``, on the
  ARM weight step, add ``(contexts << 16)·S`` to ``o`` before the shift (32 fractional bits,
  like the output layer's own products);
* ``i_μ = clip(o_μ + 64·256, 0, 32767)`` and ``i_s = clip(o_s + 5·256, 0, 2560)`` index the table
  ``μ[i] = −64 + i/256``, ``b[j] = exp(−5 + j/256)``.

The table is not recomputed: it is shipped as a float32 file (``mu_scale_table.npy``, 32 768 μ
then 2 561 scales, generated once from the formulas above with float64 ``exp`` rounded to the
nearest float32) because a platform's ``exp`` may differ in the last bit, and that is exactly the
cross-platform risk the table removes. :func:`mu_scale_table` returns it as float64 (exact
widening), the dtype constriction is given.

Overflow: all arithmetic is on int64. :class:`FixedPointArm` bounds every accumulator over all
contexts in ``[−64, 64]`` when it is built (exact integer interval arithmetic on the actual
weights, ``|acc_i| <= Σ_j |W_ji|·X_j + |B_i|`` layer by layer) and refuses networks whose bound
exceeds 2^62. For scale: with float weights ``|w| <= 2`` (``e <= 16``), 24 contexts and 24→24→24→2
the bound is about 2^57; with ``|w| <= 1`` it is about 2^53. Only huge weights can fail the check.

Kernels: the reference kernel is numpy int64 (integer ``matmul`` is exact and does not use
BLAS). When the proven accumulator bound is below 2^53 (every realistic ARM: see above) the same
integer arithmetic runs in float64 instead, about three times faster, each layer's shift folded
into its weights and bias as a factor ``2^-16`` (``2^-24`` for the output): every operand,
product, partial sum, bias, ``max(·, 0)`` and ``floor`` then acts on integers times a power of
two (exact dyadic values) of magnitude below 2^53, which IEEE-754 double arithmetic
represents exactly, so no rounding ever happens, in any summation order, with or without FMA,
on any thread count or BLAS. The results are the int64 results bit for bit (tested on random and
near-bound networks). ``float_kernel=False`` forces the int64 kernel.

Torch tensors are accepted and returned for convenience; the computation itself is numpy.
"""

from __future__ import annotations

import functools
import io
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np

from coolchic.bitstream.constants import (
    ARM_ACCUMULATOR_LIMIT,
    ARM_MAX_BIAS_EXP,
    ARM_MAX_WEIGHT_EXP,
    BIAS_SHIFT,
    FLOAT_EXACT_LIMIT,
    LATENT_ABS_MAX,
    LATENT_MAX,
    LATENT_MIN,
    LOG_SCALE_MIN,
    LOG_SCALE_OFFSET,
    MU_INDEX_OFFSET,
    MU_MIN,
    MU_SCALE_TABLE_FILE,
    MU_TABLE_SIZE,
    NN_Q_MAX,
    OUTPUT_FRAC_BITS,
    OUTPUT_SHIFT,
    SCALE_INDEX_OFFSET,
    SCALE_TABLE_SIZE,
    WEIGHT_SHIFT,
)
from coolchic.errors import LimitExceeded

_HIDDEN_SCALE = 2.0**-WEIGHT_SHIFT
_OUTPUT_SCALE = 2.0**-OUTPUT_SHIFT
_IFCE_SCALE = 2.0**-BIAS_SHIFT
#: The last index of the μ table and of the scale table (the float kernel's clip).
_LAST_INDICES = np.array([MU_TABLE_SIZE - 1, SCALE_TABLE_SIZE - 1], dtype=np.float64)

__all__ = [
    "FixedPointArm",
    "FixedPointIfce",
    "QuantizedLayer",
    "log_scale_from_index",
    "mu_from_index",
    "mu_scale_table",
]


@functools.cache
def _load_table() -> tuple[np.ndarray, np.ndarray]:
    raw = resources.files("coolchic.bitstream").joinpath(MU_SCALE_TABLE_FILE).read_bytes()
    table = np.load(io.BytesIO(raw), allow_pickle=False)
    expected = (MU_TABLE_SIZE + SCALE_TABLE_SIZE,)
    if table.dtype != np.dtype("<f4") or table.shape != expected:
        raise RuntimeError(
            f"{MU_SCALE_TABLE_FILE}: expected float32 {expected}, found {table.dtype} "
            f"{table.shape} (damaged installation)"
        )
    wide = table.astype(np.float64)
    mu = wide[:MU_TABLE_SIZE].copy()
    scale = wide[MU_TABLE_SIZE:].copy()
    mu.setflags(write=False)
    scale.setflags(write=False)
    return mu, scale


def mu_scale_table() -> tuple[np.ndarray, np.ndarray]:
    """The shipped lookup tables, read once.

    Returns:
        ``(mu, scale)``: read-only float64 arrays, ``mu[i] = −64 + i/256`` for ``i`` in
        0..32767 (exact) and ``scale[j] = exp(−5 + j/256)`` rounded to float32, for ``j`` in
        0..2560 (``[0.0067, 148.4]``). The values are the float32 file widened exactly.
    """
    return _load_table()


def _to_int64(value: Any, name: str) -> np.ndarray:
    """An integer numpy array or torch tensor (any device) as a numpy int64 array."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name}: expected an integer tensor, found {value.dtype}")
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected an integer array, found dtype {array.dtype}")
    return array.astype(np.int64)


def _check_exp(value: int, limit: int, name: str) -> int:
    if not (isinstance(value, int | np.integer) and 0 <= value <= limit):
        raise ValueError(
            f"{name}: expected an integer step exponent in 0..{limit}, found {value!r}"
        )
    return int(value)


@dataclass(frozen=True, eq=False)
class QuantizedLayer:
    """One linear layer as transmitted: the float weight is ``weight · 2^-weight_exp``.

    Attributes:
        weight: int64 ``[out, in]``, ``|q| <= 2^15`` (``nn.Linear`` layout).
        bias: int64 ``[out]``, ``|q| <= 2^15``.
        weight_exp: step exponent of the weights, 0..16.
        bias_exp: step exponent of the biases, 0..32.
    """

    weight: np.ndarray
    bias: np.ndarray
    weight_exp: int
    bias_exp: int

    def __post_init__(self) -> None:
        weight = _to_int64(self.weight, "weight")
        bias = _to_int64(self.bias, "bias")
        if weight.ndim != 2 or bias.shape != (weight.shape[0],) or weight.shape[0] < 1:
            raise ValueError(
                f"layer shapes: expected weight [out, in] and bias [out], found "
                f"{tuple(weight.shape)} and {tuple(bias.shape)}"
            )
        for label, array in (("weight", weight), ("bias", bias)):
            if array.size and int(np.abs(array).max()) > NN_Q_MAX:
                raise LimitExceeded(
                    f"ARM {label}: expected |q| <= {NN_Q_MAX}, found {int(np.abs(array).max())}"
                )
        object.__setattr__(self, "weight", weight)
        object.__setattr__(self, "bias", bias)
        object.__setattr__(
            self, "weight_exp", _check_exp(self.weight_exp, ARM_MAX_WEIGHT_EXP, "weight_exp")
        )
        object.__setattr__(
            self, "bias_exp", _check_exp(self.bias_exp, ARM_MAX_BIAS_EXP, "bias_exp")
        )

    def to_float(self) -> tuple[np.ndarray, np.ndarray]:
        """The de-quantised float64 ``(weight [out, in], bias [out])`` (exact)."""
        return (
            np.ldexp(self.weight.astype(np.float64), -self.weight_exp),
            np.ldexp(self.bias.astype(np.float64), -self.bias_exp),
        )


def _layer_of(spec: QuantizedLayer | Sequence[Any], name: str) -> QuantizedLayer:
    if isinstance(spec, QuantizedLayer):
        return spec
    if len(spec) != 4:
        raise ValueError(f"{name}: expected (weight, bias, weight_exp, bias_exp), found {spec!r}")
    weight, bias, weight_exp, bias_exp = spec
    return QuantizedLayer(weight, bias, weight_exp, bias_exp)


@dataclass(frozen=True, eq=False)
class FixedPointArm:
    """Integer ARM: int64 contexts ``[N, C]`` → μ and scale table indices ``[N]`` each.

    Build it with :meth:`from_quantized`. The stored layers are already folded (residual
    identity, input shift, −4 log-scale offset and table offsets), weights transposed to
    ``[in, out]``.

    Attributes:
        layers: ``(weight int64 [in, out], bias int64 [out])`` per layer, the last one with
            ``out = 2``; the first weight carries the ``<< 16`` of the input contexts.
        n_contexts: C, the input width.
        stabiliser: int64 ``[C, 2]``, the stabiliser's weights with the ``<< 16`` of the
            contexts folded in, added to the output accumulator; None without one.
        accumulator_bound: proven bound on ``|accumulator|`` over all contexts in [−64, 64].
    """

    layers: tuple[tuple[np.ndarray, np.ndarray], ...]
    n_contexts: int
    float_kernel: bool = True
    stabiliser: np.ndarray | None = None
    accumulator_bound: int = field(init=False)
    _float_layers: tuple[tuple[np.ndarray, np.ndarray], ...] | None = field(init=False, repr=False)
    _float_stabiliser: np.ndarray | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.layers:
            raise ValueError("layers: expected at least the output layer, found none")
        width = self.n_contexts
        for index, (weight, bias) in enumerate(self.layers):
            if weight.dtype != np.int64 or bias.dtype != np.int64:
                raise TypeError(f"layer {index}: expected int64 arrays")
            if weight.shape[0] != width or bias.shape != (weight.shape[1],):
                raise ValueError(
                    f"layer {index}: expected weight [{width}, out] and bias [out], found "
                    f"{weight.shape} and {bias.shape}"
                )
            width = weight.shape[1]
        if width != 2:
            raise ValueError(f"output layer: expected 2 outputs (mu, log-scale), found {width}")
        if self.stabiliser is not None and (
            self.stabiliser.dtype != np.int64 or self.stabiliser.shape != (self.n_contexts, 2)
        ):
            raise ValueError(
                f"stabiliser: expected int64 [{self.n_contexts}, 2], found "
                f"{self.stabiliser.dtype} {self.stabiliser.shape}"
            )
        bound = self._bound()
        object.__setattr__(self, "accumulator_bound", bound)
        float_layers = None
        if self.float_kernel and bound < FLOAT_EXACT_LIMIT:
            # Each layer's right shift is folded in as its power of two (exact): the kernel
            # then only floors.
            scales = [_HIDDEN_SCALE] * (len(self.layers) - 1) + [_OUTPUT_SCALE]
            float_layers = tuple(
                (weight.astype(np.float64) * scale, bias.astype(np.float64) * scale)
                for (weight, bias), scale in zip(self.layers, scales, strict=True)
            )
        object.__setattr__(self, "_float_layers", float_layers)
        float_stabiliser = None
        if float_layers is not None and self.stabiliser is not None:
            float_stabiliser = self.stabiliser.astype(np.float64) * _OUTPUT_SCALE
        object.__setattr__(self, "_float_stabiliser", float_stabiliser)

    @property
    def uses_float_kernel(self) -> bool:
        """True when the exact float64 kernel runs (bound below 2^53 and allowed)."""
        return self._float_layers is not None

    @property
    def float_layers(self) -> tuple[tuple[np.ndarray, np.ndarray], ...] | None:
        """The exact float64 kernel's layers (shifts folded in), None when it does not run."""
        return self._float_layers

    @property
    def float_stabiliser(self) -> np.ndarray | None:
        """The float64 kernel's stabiliser ``[C, 2]``, None without one or without the kernel."""
        return self._float_stabiliser

    def _bound(self) -> int:
        """Worst-case |accumulator| over contexts in [−64, 64] (exact integer arithmetic)."""
        x = [LATENT_ABS_MAX] * self.n_contexts
        skip = [0, 0]  # the stabiliser's share of the output accumulators
        if self.stabiliser is not None:
            skip = [
                sum(abs(w) * LATENT_ABS_MAX for w in row)
                for row in self.stabiliser.T.tolist()  # [2][C]
            ]
        worst = 0
        last = len(self.layers) - 1
        for index, (weight, bias) in enumerate(self.layers):
            magnitudes = np.abs(weight).T.tolist()  # [out][in], python ints
            bounds = [
                sum(w * b for w, b in zip(row, x, strict=True)) + abs(int(c))
                for row, c in zip(magnitudes, bias.tolist(), strict=True)
            ]
            if index == last:
                bounds = [bound + extra for bound, extra in zip(bounds, skip, strict=True)]
            peak = max(bounds)
            if peak > ARM_ACCUMULATOR_LIMIT:
                raise LimitExceeded(
                    f"ARM layer {index}: worst-case accumulator 2^{peak.bit_length()} exceeds "
                    f"the int64 budget 2^{ARM_ACCUMULATOR_LIMIT.bit_length() - 1} "
                    "(weights too large for the integer ARM)"
                )
            worst = max(worst, peak)
            if index != last:
                x = [bound >> WEIGHT_SHIFT for bound in bounds]
        return worst

    @classmethod
    def from_quantized(
        cls,
        hidden: Sequence[QuantizedLayer | Sequence[Any]],
        output: QuantizedLayer | Sequence[Any],
        *,
        stabiliser: tuple[Any, int] | None = None,
        float_kernel: bool = True,
    ) -> FixedPointArm:
        """Fixed-point ARM from the transmitted integers.

        Args:
            hidden: per hidden layer ``(W_q int [out, in], B_q int [out], w_exp, b_exp)`` (or a
                :class:`QuantizedLayer`); a layer with in == out is residual.
            output: the output layer, ``W_q [2, in]``, ``B_q [2]``: row 0 is μ, row 1 the raw
                log-scale ``s``.
            stabiliser: ``(S_q int [2, C], exp)``, the stabiliser's weights and their step
                exponent (the ARM weights'), or None.
            float_kernel: allow the exact float64 kernel (same results, faster); False forces
                the int64 kernel.

        Raises:
            TypeError: float weights or biases.
            ValueError: shapes that do not chain, or step exponents out of range.
            LimitExceeded: ``|q| > 2^15`` or weights so large the int64 accumulators could
                overflow.
        """
        layers = [_layer_of(spec, f"hidden layer {i}") for i, spec in enumerate(hidden)]
        out_layer = _layer_of(output, "output layer")
        if out_layer.weight.shape[0] != 2:
            raise ValueError(
                f"output layer: expected 2 rows (mu, log-scale), found {out_layer.weight.shape[0]}"
            )
        n_contexts = (layers[0] if layers else out_layer).weight.shape[1]
        folded: list[tuple[np.ndarray, np.ndarray]] = []
        for index, layer in enumerate([*layers, out_layer]):
            weight = layer.weight << (WEIGHT_SHIFT - layer.weight_exp)
            bias = layer.bias << (BIAS_SHIFT - layer.bias_exp)
            n_out, n_in = weight.shape
            if index < len(layers) and n_in == n_out:
                weight = weight + (np.eye(n_in, dtype=np.int64) << WEIGHT_SHIFT)
            if index == 0:
                weight = weight << WEIGHT_SHIFT  # x = contexts << 16, folded in
            folded.append((np.ascontiguousarray(weight.T), bias))
        weight, bias = folded[-1]
        bias = bias.copy()
        # o >> 24 + offset == (o + offset << 24) >> 24: fold the table offsets, and -4.
        bias[0] += MU_INDEX_OFFSET << OUTPUT_SHIFT
        bias[1] += (SCALE_INDEX_OFFSET << OUTPUT_SHIFT) - (LOG_SCALE_OFFSET << BIAS_SHIFT)
        folded[-1] = (weight, bias)
        skip = None
        if stabiliser is not None:
            # a weight layer [2, C] without bias, read like the first layer (contexts << 16)
            skip_layer = QuantizedLayer(stabiliser[0], np.zeros(2, np.int64), stabiliser[1], 0)
            if skip_layer.weight.shape != (2, n_contexts):
                raise ValueError(
                    f"stabiliser: expected [2, {n_contexts}] weights, found "
                    f"{skip_layer.weight.shape}"
                )
            shift = WEIGHT_SHIFT - skip_layer.weight_exp + WEIGHT_SHIFT
            skip = np.ascontiguousarray((skip_layer.weight << shift).T)
        return cls(tuple(folded), n_contexts, float_kernel, skip)

    def table_indices(self, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The unchecked hot path of :meth:`forward` (used once per wavefront step).

        Args:
            contexts: integer numpy ``[N, C]`` (int8 or int64) with every value in [−64, 64].
                Not checked: values outside that range void the overflow proof.

        Returns:
            ``(mu_index, scale_index)``: int64 ``[N]`` each.
        """
        if self._float_layers is not None:
            return self._indices_float(contexts)
        x = contexts
        last = len(self.layers) - 1
        for index, (weight, bias) in enumerate(self.layers):
            x = x @ weight
            x += bias
            if index != last:
                np.maximum(x, 0, out=x)
                x >>= WEIGHT_SHIFT
        if self.stabiliser is not None:
            x += contexts.astype(np.int64) @ self.stabiliser
        x >>= OUTPUT_SHIFT
        mu_index = np.clip(x[:, 0], 0, MU_TABLE_SIZE - 1)
        scale_index = np.clip(x[:, 1], 0, SCALE_TABLE_SIZE - 1)
        return mu_index, scale_index

    def _indices_float(self, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The int64 kernel's arithmetic on exactly-represented values in float64.

        The layers hold ``W·2^-s`` and ``B·2^-s`` (s = 16, 24 for the output): every product
        and partial sum is the int64 kernel's integer times that power of two, exact below
        2^53, so ``floor`` gives the shifted integer. Few operations: this runs once per
        wavefront step.
        """
        assert self._float_layers is not None
        inputs = x = contexts.astype(np.float64)
        *hidden, (out_weight, out_bias) = self._float_layers
        for weight, bias in hidden:
            x = x @ weight
            x += bias
            np.maximum(x, 0.0, out=x)
            np.floor(x, out=x)  # == >> 16 on the integer
        x = x @ out_weight
        x += out_bias
        if self._float_stabiliser is not None:
            x += inputs @ self._float_stabiliser
        np.floor(x, out=x)  # == >> 24
        np.minimum(x, _LAST_INDICES, out=x)
        np.maximum(x, 0.0, out=x)
        indices = x.astype(np.int64)
        return indices[:, 0], indices[:, 1]

    def forward(self, contexts: Any) -> tuple[Any, Any]:
        """Table indices of μ and of the scale for each row of contexts.

        Args:
            contexts: integer ``[N, C]`` (numpy array or torch tensor), values in [−64, 64].

        Returns:
            ``(mu_index, scale_index)``, int64 ``[N]`` each, in ``[0, 32767]`` and
            ``[0, 2560]``; torch tensors on the input's device if a tensor was given.

        Raises:
            TypeError: a float input.
            ValueError: a bad shape or a context outside [−64, 64].
        """
        torch = sys.modules.get("torch")
        as_tensor = torch is not None and isinstance(contexts, torch.Tensor)
        array = _to_int64(contexts, "contexts")
        if array.ndim != 2 or array.shape[1] != self.n_contexts:
            raise ValueError(
                f"contexts: expected shape [N, {self.n_contexts}], found {tuple(array.shape)}"
            )
        if array.size and int(np.abs(array).max()) > LATENT_ABS_MAX:
            raise ValueError(
                f"contexts: expected values in [-{LATENT_ABS_MAX}, {LATENT_ABS_MAX}], found "
                f"{int(array.min())}..{int(array.max())}"
            )
        mu_index, scale_index = self.table_indices(array)
        if as_tensor:
            device = contexts.device
            return (
                torch.from_numpy(mu_index.copy()).to(device),
                torch.from_numpy(scale_index.copy()).to(device),
            )
        return mu_index, scale_index

    __call__ = forward

    def laplace_params(self, contexts: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(μ, b)`` as the range coder sees them: float64 ``[N]`` each, from the table."""
        mu_index, scale_index = self.forward(_to_int64(contexts, "contexts"))
        mu, scale = mu_scale_table()
        return mu[mu_index], scale[scale_index]


@dataclass(frozen=True, eq=False)
class FixedPointIfce:
    """Integer inter-feature context (format version 5): coarser latents → C_f ARM inputs.

    For grid g, the C_f values of a latent are ``clip(floor(W_g·v + b_g + ½), −64, 63)``, v the
    co-located values of the coarser grids it reads (:func:`~coolchic.model.layout.ifce_sources`),
    ``W_g``, ``b_g`` its map on the ARM's weight and bias steps. In integers: weights
    ``q << (32 − e_w)`` and biases ``q << (32 − e_b)`` (32 fractional bits, ``e_b <= 32``),
    ``(v·W + B + 2^31) >> 32``, then the clip. The features are latent-like integers, so the
    integer ARM and its overflow bound take them as they take the latents.

    Attributes:
        maps: per grid, ``(weight int64 [n_in, C_f], bias int64 [C_f])``, the rounding half
            folded into the bias.
        accumulator_bound: proven bound on ``|v·W + B|`` over all inputs in [−64, 64].
        float_kernel: allow the exact float64 kernel when the bound is under 2^53 (same
            results, as for :class:`FixedPointArm`; about twice as fast as int64 products,
            which have no BLAS); False forces the int64 kernel.
    """

    maps: tuple[tuple[np.ndarray, np.ndarray], ...]
    float_kernel: bool = True
    accumulator_bound: int = field(init=False)
    _float_maps: tuple[tuple[np.ndarray, np.ndarray], ...] | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        worst = 0
        for index, (weight, bias) in enumerate(self.maps):
            if weight.dtype != np.int64 or bias.dtype != np.int64 or weight.ndim != 2:
                raise TypeError(f"inter-feature map {index}: expected int64 arrays")
            if bias.shape != (weight.shape[1],):
                raise ValueError(
                    f"inter-feature map {index}: expected weight [in, out] and bias [out], "
                    f"found {weight.shape} and {bias.shape}"
                )
            columns = np.abs(weight).T.tolist()  # [out][in], python ints
            peak = max(
                sum(w * LATENT_ABS_MAX for w in column) + abs(int(b))
                for column, b in zip(columns, bias.tolist(), strict=True)
            )
            if peak > ARM_ACCUMULATOR_LIMIT:
                raise LimitExceeded(
                    f"inter-feature map {index}: worst-case accumulator 2^{peak.bit_length()} "
                    f"exceeds the int64 budget 2^{ARM_ACCUMULATOR_LIMIT.bit_length() - 1}"
                )
            worst = max(worst, peak)
        object.__setattr__(self, "accumulator_bound", worst)
        float_maps = None
        if self.float_kernel and worst < FLOAT_EXACT_LIMIT:
            # The >> 32 folded in as its power of two (exact): the kernel then only floors.
            float_maps = tuple(
                (weight.astype(np.float64) * _IFCE_SCALE, bias.astype(np.float64) * _IFCE_SCALE)
                for weight, bias in self.maps
            )
        object.__setattr__(self, "_float_maps", float_maps)

    @property
    def float_maps(self) -> tuple[tuple[np.ndarray, np.ndarray], ...] | None:
        """The exact float64 kernel's maps (``>> 32`` folded in), None when it does not run."""
        return self._float_maps

    @property
    def n_features(self) -> int:
        """C_f."""
        return int(self.maps[0][1].shape[0]) if self.maps else 0

    @classmethod
    def from_quantized(cls, layers: Sequence[QuantizedLayer]) -> FixedPointIfce:
        """From the transmitted maps, one :class:`QuantizedLayer` ``[C_f, n_in]`` per grid.

        Raises:
            ValueError: maps of different output widths.
            LimitExceeded: ``|q| > 2^15`` or an accumulator that could overflow.
        """
        if len({layer.weight.shape[0] for layer in layers}) > 1:
            raise ValueError("inter-feature maps: expected the same number of features each")
        maps = tuple(
            (
                np.ascontiguousarray((layer.weight << (BIAS_SHIFT - layer.weight_exp)).T),
                (layer.bias << (BIAS_SHIFT - layer.bias_exp)) + (1 << (BIAS_SHIFT - 1)),
            )
            for layer in layers
        )
        return cls(maps)

    def features(self, grid: int, values: np.ndarray) -> np.ndarray:
        """The C_f values of grid ``grid``'s latents from their coarser values.

        Args:
            grid: index of the grid (< ``len(maps)``).
            values: integer ``[N, n_in]`` with every value in [−64, 64] (not checked).

        Returns:
            int64 ``[N, C_f]`` in [−64, 63].
        """
        if self._float_maps is not None:
            weight, bias = self._float_maps[grid]
            scaled = values.astype(np.float64) @ weight
            scaled += bias
            np.floor(scaled, out=scaled)
            np.clip(scaled, LATENT_MIN, LATENT_MAX, out=scaled)
            return scaled.astype(np.int64)
        weight, bias = self.maps[grid]
        accumulator = values.astype(np.int64) @ weight
        accumulator += bias
        accumulator >>= BIAS_SHIFT
        return np.clip(accumulator, LATENT_MIN, LATENT_MAX, out=accumulator)


def mu_from_index(mu_index: np.ndarray) -> np.ndarray:
    """``−64 + i/256`` as float64 (the μ table's formula), for tests and diagnostics."""
    return MU_MIN + np.asarray(mu_index, dtype=np.float64) / (1 << OUTPUT_FRAC_BITS)


def log_scale_from_index(scale_index: np.ndarray) -> np.ndarray:
    """``−5 + j/256`` as float64, the log of the scale table entry ``j``."""
    return LOG_SCALE_MIN + np.asarray(scale_index, dtype=np.float64) / (1 << OUTPUT_FRAC_BITS)
