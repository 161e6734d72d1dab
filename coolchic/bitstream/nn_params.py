"""Coding of the quantised network parameters: exp-Golomb (as Cool-chic v3.2 → v5) or Rice.

Model-agnostic: the integers arrive grouped by module and kind,
``groups[module][kind] -> [int array, …]`` with ``module`` in ``NN_MODULES`` (``"arm"``,
``"upsampling"``, ``"synthesis"``) and ``kind`` in ``NN_KINDS`` (``"weight"``, ``"bias"``); the
list order is the module's parameter declaration order and must be the same at both ends.

Each (module, kind) group has one code (:class:`GroupCode`): an exp-Golomb order or, from format
version 7 on, a Golomb-Rice parameter, whichever gives the group the fewest bits. The section
is the concatenation of the six groups' codes in ``NN_GROUPS`` order (each group's arrays
flattened in C order, one after the other), zero-padded to a byte boundary at the end. The
codes and step exponents travel in the header; the decoder knows every array's shape from the
architecture. What the integers mean (steps, predictions) is :mod:`coolchic.nnquant.params`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from coolchic.bitstream import expgolomb, rice
from coolchic.bitstream.bits import BitReader, BitWriter
from coolchic.bitstream.constants import NN_GROUPS, NN_KINDS, NN_MODULES, NN_Q_MAX
from coolchic.errors import BitstreamError, LimitExceeded

__all__ = [
    "GroupCode",
    "GroupKey",
    "ParamGroups",
    "best_code",
    "decode_quantized",
    "encode_quantized",
    "fits",
]

#: ``(module, kind)``, e.g. ``("arm", "weight")``.
GroupKey = tuple[str, str]
#: ``groups[module][kind] -> [array, …]``.
ParamGroups = Mapping[str, Mapping[str, Sequence[Any]]]


class GroupCode(NamedTuple):
    """How one group's integers are written: exp-Golomb of order ``order``, or with ``rice``
    (format version 7 on) the Golomb-Rice code of parameter ``order``."""

    order: int = 0
    rice: bool = False

    def n_bits(self, values: np.ndarray) -> int:
        """Exact length of the codes of ``values``."""
        if self.rice:
            return rice.n_bits(values, self.order)
        return expgolomb.n_bits(values, self.order)

    def encode(self, values: np.ndarray) -> np.ndarray:
        """The codes of ``values`` as a 0/1 ``uint8`` array."""
        if self.rice:
            return rice.encode(values, self.order)
        return expgolomb.encode(values, self.order)

    def decode(self, reader: BitReader, count: int) -> np.ndarray:
        """Read ``count`` values."""
        if self.rice:
            return rice.decode(reader, count, self.order)
        return expgolomb.decode(reader, count, self.order)


def best_code(values: Any, *, allow_rice: bool = True) -> tuple[GroupCode, int]:
    """The code that writes ``values`` in the fewest bits, and that length.

    Exp-Golomb wins ties, so a group coded the same either way reads as version 6 would
    write it. ``allow_rice=False``: exp-Golomb only (format versions 2 to 6).
    """
    order, n_bits = expgolomb.best_order(values)
    if allow_rice and fits(values):
        rice_order, rice_bits = rice.best_parameter(values)
        if rice_bits < n_bits:
            return GroupCode(rice_order, rice=True), rice_bits
    return GroupCode(order), n_bits


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


def encode_quantized(
    q_groups: ParamGroups, *, allow_rice: bool = True
) -> tuple[bytes, dict[GroupKey, GroupCode]]:
    """Code already-quantised groups: the best code per group (:func:`best_code`), one bit
    string.

    Args:
        q_groups: ``q_groups[module][kind] -> [int array, …]``, ``|q| <= 2^15``; missing
            groups are empty.
        allow_rice: False writes exp-Golomb codes only (what format versions 2 to 6 read).

    Returns:
        ``(section, codes)``: the zero-padded bytes and the code of each of the six groups
        (exp-Golomb of order 0 for empty groups), to be written in the header.

    Raises:
        ValueError: an unknown module/kind, or an integer beyond ``2^15``.
    """
    _check_groups(q_groups, "q_groups")
    writer = BitWriter()
    codes: dict[GroupKey, GroupCode] = {}
    for key in NN_GROUPS:
        values = _flatten(_group(q_groups, key))
        if not fits(values):
            raise ValueError(
                f"{key[0]} {key[1]}: expected |q| <= {NN_Q_MAX}, found {int(np.abs(values).max())}"
            )
        code, _ = best_code(values, allow_rice=allow_rice)
        codes[key] = code
        writer.write_bits(code.encode(values))
    return writer.to_bytes(), codes


def decode_quantized(
    data: bytes,
    shapes: Mapping[str, Mapping[str, Sequence[Sequence[int]]]],
    codes: Mapping[GroupKey, GroupCode],
) -> dict[str, dict[str, list[np.ndarray]]]:
    """Decode the parameter section into integers.

    Args:
        data: the section.
        shapes: ``shapes[module][kind] -> [shape, …]`` of every array, as at the encoder.
        codes: the code of each group (from the header); a missing group is exp-Golomb of
            order 0.

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
        code = GroupCode(*codes.get(key, GroupCode()))
        if count * (code.order + 1) > reader.remaining:
            raise LimitExceeded(
                f"{module} {kind}: {count} parameters need at least {count * (code.order + 1)} "
                f"bits, the section has {reader.remaining} left"
            )
        values = code.decode(reader, count)
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
