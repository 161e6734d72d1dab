"""Quantisation and exp-Golomb coding of the network parameters (as Cool-chic v3.2 → v5).

Model-agnostic: parameters arrive as plain arrays grouped by module and kind,
``groups[module][kind] -> [array, …]`` with ``module`` in ``NN_MODULES`` (``"arm"``,
``"upsampling"``, ``"synthesis"``) and ``kind`` in ``NN_KINDS`` (``"weight"``, ``"bias"``); the
list order is the module's parameter declaration order and must be the same at both ends.

Per (module, kind) group there is one step ``2^-exp`` (``q = round(θ·2^exp)``, half to even) and
one exp-Golomb order (the one giving the fewest bits). The section is the concatenation of the
six groups' codes in ``NN_GROUPS`` order (each group's arrays flattened in C order, one after
the other), zero-padded to a byte boundary at the end. Exponents and orders travel in the
header; the decoder knows every array's shape from the architecture.

The step search that needs the model (rate–distortion per candidate step) is built on top of
:func:`quantize`, :func:`fits` and :func:`estimate_bits`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from coolchic.bitstream import expgolomb
from coolchic.bitstream.bits import BitReader, BitWriter
from coolchic.bitstream.constants import (
    MAX_STEP_EXPONENT,
    NN_GROUPS,
    NN_KINDS,
    NN_MODULES,
    NN_Q_MAX,
)
from coolchic.errors import BitstreamError, LimitExceeded

__all__ = [
    "GroupKey",
    "ParamGroups",
    "decode_nn",
    "decode_quantized",
    "dequantize",
    "encode_nn",
    "encode_quantized",
    "estimate_bits",
    "fits",
    "quantize",
    "usable_exps",
]

#: ``(module, kind)``, e.g. ``("arm", "weight")``.
GroupKey = tuple[str, str]
#: ``groups[module][kind] -> [array, …]``.
ParamGroups = Mapping[str, Mapping[str, Sequence[Any]]]


def _to_numpy(value: Any) -> np.ndarray:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _check_exp(exp: int) -> int:
    if isinstance(exp, bool) or not isinstance(exp, int | np.integer):
        raise TypeError(f"step exponent: expected an integer, found {exp!r}")
    if not 0 <= exp <= MAX_STEP_EXPONENT:
        raise ValueError(f"step exponent: expected 0..{MAX_STEP_EXPONENT}, found {exp}")
    return int(exp)


def quantize(values: Any, exp: int) -> np.ndarray:
    """``q = round(θ · 2^exp)`` (half to even), the integers sent for step ``2^-exp``.

    Args:
        values: real array or tensor, any shape, finite.
        exp: step exponent, 0..31.

    Returns:
        int64 array of the same shape. It may exceed ``2^15``: check with :func:`fits`.

    Raises:
        ValueError: non-finite values or an exponent out of range.
    """
    exp = _check_exp(exp)
    array = _to_numpy(values).astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError("values: expected finite parameters, found NaN or infinity")
    scaled = np.rint(np.ldexp(array, exp))
    if scaled.size and float(np.abs(scaled).max()) >= 2.0**62:
        raise ValueError(f"values: too large for step 2^-{exp} (|q| >= 2^62)")
    return scaled.astype(np.int64)


def dequantize(q: Any, exp: int) -> np.ndarray:
    """``q · 2^-exp`` as float32 (exact for ``|q| <= 2^24``).

    Args:
        q: integer array, any shape.
        exp: step exponent, 0..31.
    """
    exp = _check_exp(exp)
    array = _to_numpy(q)
    if array.dtype.kind not in "iu":
        raise TypeError(f"q: expected an integer array, found dtype {array.dtype}")
    return np.ldexp(array.astype(np.float64), -exp).astype(np.float32)


def fits(q: Any) -> bool:
    """True when every ``|q| <= 2^15``, the range the format carries (else skip this step)."""
    array = _to_numpy(q)
    return not array.size or int(np.abs(array.astype(np.int64)).max()) <= NN_Q_MAX


def usable_exps(values: Any, candidates: Sequence[int]) -> list[int]:
    """The candidate step exponents whose integers :func:`fits` (order kept)."""
    return [exp for exp in candidates if fits(quantize(values, exp))]


def estimate_bits(q: Any) -> int:
    """Exact exp-Golomb length of one group's integers at its best order (bits).

    Args:
        q: integer array or a sequence of them (flattened and concatenated).
    """
    return expgolomb.best_order(_flatten(q))[1]


def _flatten(arrays: Any) -> np.ndarray:
    if isinstance(arrays, (list, tuple)):
        parts = [_to_numpy(a).ravel() for a in arrays]
        if not parts:
            return np.zeros(0, dtype=np.int64)
        for part in parts:
            if part.dtype.kind not in "iu":
                raise TypeError(f"q: expected integer arrays, found dtype {part.dtype}")
        return np.concatenate([p.astype(np.int64) for p in parts])
    array = _to_numpy(arrays)
    if array.dtype.kind not in "iu":
        raise TypeError(f"q: expected an integer array, found dtype {array.dtype}")
    return array.astype(np.int64).ravel()


def _check_groups(groups: ParamGroups, what: str) -> None:
    for module, kinds in groups.items():
        if module not in NN_MODULES:
            raise ValueError(f"{what}: expected modules in {NN_MODULES}, found {module!r}")
        for kind in kinds:
            if kind not in NN_KINDS:
                raise ValueError(f"{what}[{module!r}]: expected kinds {NN_KINDS}, found {kind!r}")


def _group(groups: ParamGroups, key: GroupKey) -> Sequence[Any]:
    module, kind = key
    return groups.get(module, {}).get(kind, ())


def encode_quantized(q_groups: ParamGroups) -> tuple[bytes, dict[GroupKey, int]]:
    """Code already-quantised groups: the best exp-Golomb order per group, one bit string.

    Args:
        q_groups: ``q_groups[module][kind] -> [int array, …]``, ``|q| <= 2^15``; missing
            groups are empty.

    Returns:
        ``(section, orders)``: the zero-padded bytes and the order of each of the six groups
        (0 for empty groups), to be written in the header.

    Raises:
        ValueError: an unknown module/kind, or an integer beyond ``2^15``.
    """
    _check_groups(q_groups, "q_groups")
    writer = BitWriter()
    orders: dict[GroupKey, int] = {}
    for key in NN_GROUPS:
        values = _flatten(list(_group(q_groups, key)))
        if not fits(values):
            raise ValueError(
                f"{key[0]} {key[1]}: expected |q| <= {NN_Q_MAX}, found {int(np.abs(values).max())}"
            )
        order, _ = expgolomb.best_order(values)
        orders[key] = order
        writer.write_bits(expgolomb.encode(values, order))
    return writer.to_bytes(), orders


def encode_nn(
    groups: ParamGroups, exps: Mapping[GroupKey, int]
) -> tuple[bytes, dict[GroupKey, int]]:
    """Quantise float groups with their steps and code them (see :func:`encode_quantized`).

    Args:
        groups: ``groups[module][kind] -> [float array or tensor, …]``.
        exps: step exponent of each non-empty ``(module, kind)`` group.

    Returns:
        ``(section, orders)``.

    Raises:
        ValueError: a missing exponent, or a step whose integers exceed ``2^15``.
    """
    _check_groups(groups, "groups")
    q_groups: dict[str, dict[str, list[np.ndarray]]] = {}
    for module, kind in NN_GROUPS:
        arrays = _group(groups, (module, kind))
        if not arrays:
            continue
        if (module, kind) not in exps:
            raise ValueError(f"exps: expected a step exponent for {(module, kind)!r}")
        q_groups.setdefault(module, {})[kind] = [
            quantize(array, exps[(module, kind)]) for array in arrays
        ]
    return encode_quantized(q_groups)


def decode_quantized(
    data: bytes,
    shapes: Mapping[str, Mapping[str, Sequence[Sequence[int]]]],
    orders: Mapping[GroupKey, int],
) -> dict[str, dict[str, list[np.ndarray]]]:
    """Decode the parameter section into integers.

    Args:
        data: the section.
        shapes: ``shapes[module][kind] -> [shape, …]`` of every array, as at the encoder.
        orders: exp-Golomb order of each group (from the header).

    Returns:
        ``q[module][kind] -> [int64 array of its shape, …]`` for every group in ``shapes``.

    Raises:
        LimitExceeded: more parameters than the section can hold.
        BitstreamError: truncated or corrupt codes, ``|q| > 2^15``, non-zero padding, or bytes
            left over.
    """
    _check_groups(shapes, "shapes")
    reader = BitReader(data)
    result: dict[str, dict[str, list[np.ndarray]]] = {}
    for key in NN_GROUPS:
        module, kind = key
        group_shapes = [tuple(int(d) for d in shape) for shape in _group(shapes, key)]
        count = sum(int(np.prod(shape, dtype=np.int64)) for shape in group_shapes)
        order = int(orders.get(key, 0))
        if count * (order + 1) > reader.remaining:
            raise LimitExceeded(
                f"{module} {kind}: {count} parameters need at least {count * (order + 1)} bits, "
                f"the section has {reader.remaining} left"
            )
        values = expgolomb.decode(reader, count, order)
        if values.size and int(np.abs(values).max()) > NN_Q_MAX:
            raise BitstreamError(
                f"{module} {kind}: expected |q| <= {NN_Q_MAX}, found {int(np.abs(values).max())}"
            )
        arrays: list[np.ndarray] = []
        start = 0
        for shape in group_shapes:
            size = int(np.prod(shape, dtype=np.int64))
            arrays.append(values[start : start + size].reshape(shape))
            start += size
        if group_shapes:
            result.setdefault(module, {})[kind] = arrays
    if reader.remaining >= 8:
        raise BitstreamError(
            f"nn section: expected {(reader.position + 7) // 8} bytes, found {len(data)} "
            "(bytes left over)"
        )
    if reader.align():
        raise BitstreamError("nn section: expected zero padding bits at the end, found ones")
    return result


def decode_nn(
    data: bytes,
    shapes: Mapping[str, Mapping[str, Sequence[Sequence[int]]]],
    exps: Mapping[GroupKey, int],
    orders: Mapping[GroupKey, int],
) -> dict[str, dict[str, list[np.ndarray]]]:
    """Decode and de-quantise the parameter section: float32 arrays ``q · 2^-exp``.

    Args:
        data: the section.
        shapes: ``shapes[module][kind] -> [shape, …]``.
        exps: step exponent of each group (from the header).
        orders: exp-Golomb order of each group (from the header).

    Returns:
        ``values[module][kind] -> [float32 array, …]`` (the ARM needs the integers: use
        :func:`decode_quantized` for it).
    """
    q = decode_quantized(data, shapes, orders)
    for module, kinds in q.items():
        for kind in kinds:
            if (module, kind) not in exps:
                raise ValueError(f"exps: expected a step exponent for {(module, kind)!r}")
    return {
        module: {
            kind: [dequantize(array, exps[(module, kind)]) for array in arrays]
            for kind, arrays in kinds.items()
        }
        for module, kinds in q.items()
    }
