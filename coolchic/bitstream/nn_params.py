"""Exp-Golomb coding of the quantised network parameters (as Cool-chic v3.2 → v5).

Model-agnostic: the integers arrive grouped by module and kind,
``groups[module][kind] -> [int array, …]`` with ``module`` in ``NN_MODULES`` (``"arm"``,
``"upsampling"``, ``"synthesis"``) and ``kind`` in ``NN_KINDS`` (``"weight"``, ``"bias"``); the
list order is the module's parameter declaration order and must be the same at both ends.

Each (module, kind) group has one exp-Golomb order (the one giving the fewest bits). The section
is the concatenation of the six groups' codes in ``NN_GROUPS`` order (each group's arrays
flattened in C order, one after the other), zero-padded to a byte boundary at the end. Orders
and step exponents travel in the header; the decoder knows every array's shape from the
architecture. What the integers mean (steps, predictions) is :mod:`coolchic.nnquant.params`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from coolchic.bitstream import expgolomb
from coolchic.bitstream.bits import BitReader, BitWriter
from coolchic.bitstream.constants import NN_GROUPS, NN_KINDS, NN_MODULES, NN_Q_MAX
from coolchic.errors import BitstreamError, LimitExceeded

__all__ = ["GroupKey", "ParamGroups", "decode_quantized", "encode_quantized", "fits"]

#: ``(module, kind)``, e.g. ``("arm", "weight")``.
GroupKey = tuple[str, str]
#: ``groups[module][kind] -> [array, …]``.
ParamGroups = Mapping[str, Mapping[str, Sequence[Any]]]


def fits(q: Any) -> bool:
    """True when every ``|q| <= 2^15``, the range the format carries (else skip this step)."""
    array = np.asarray(q)
    return not array.size or int(np.abs(array.astype(np.int64)).max()) <= NN_Q_MAX


def _flatten(arrays: Sequence[Any]) -> np.ndarray:
    """One group's integer arrays, flattened and concatenated as int64."""
    parts = [np.asarray(a).ravel() for a in arrays]
    if not parts:
        return np.zeros(0, dtype=np.int64)
    for part in parts:
        if part.dtype.kind not in "iu":
            raise TypeError(f"q: expected integer arrays, found dtype {part.dtype}")
    return np.concatenate([p.astype(np.int64) for p in parts])


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
        values = _flatten(_group(q_groups, key))
        if not fits(values):
            raise ValueError(
                f"{key[0]} {key[1]}: expected |q| <= {NN_Q_MAX}, found {int(np.abs(values).max())}"
            )
        order, _ = expgolomb.best_order(values)
        orders[key] = order
        writer.write_bits(expgolomb.encode(values, order))
    return writer.to_bytes(), orders


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
