"""Declarative fields of a bit string: how each value is coded, its range, its rules.

A format lists its fields once, as a table of :class:`Field` (one value) and :class:`Repeated`
(a list of values or of :class:`Record` objects) entries, a run of which may be a
:class:`Preset` (one code when the values are those of a known set); :func:`write_fields`,
:func:`read_fields` and :func:`check_fields` walk the same table, so the writer, the reader and
the validator cannot drift apart, and :func:`bit_bounds` derives the shortest and longest bit
string from the ranges. The stream header (:mod:`coolchic.bitstream.header_fields`) is such a
table; ``docs/bitstream.md`` §1 describes it.

Reading checks only what a reader must check before it goes on: a count that sizes a loop
(refused above its limit before the loop runs) and an enum code. The values are checked when
the object is built from them, against the same table (:func:`check_fields`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from coolchic.bitstream.bits import BitReader, BitWriter
from coolchic.bitstream.expgolomb import read_ue, ue_bits, write_ue
from coolchic.errors import BitstreamError, LimitExceeded

__all__ = [
    "Bits",
    "Code",
    "Entry",
    "Field",
    "FieldError",
    "Flag",
    "Preset",
    "Record",
    "Repeated",
    "Rule",
    "Ue",
    "bit_bounds",
    "build",
    "check_fields",
    "check_int",
    "field_error",
    "read_fields",
    "write_fields",
]

# --------------------------------------------------------------------------------------------
# Validation errors


class FieldError(ValueError):
    """A header field out of range; ``is_limit`` marks sizes and counts (→ LimitExceeded)."""

    def __init__(self, message: str, *, is_limit: bool) -> None:
        super().__init__(message)
        self.is_limit = is_limit


def field_error(name: str, expected: str, found: object, *, is_limit: bool) -> FieldError:
    return FieldError(f"{name}: expected {expected}, found {found!r}", is_limit=is_limit)


def check_int(value: object, low: int, high: int, name: str, *, is_limit: bool = True) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise field_error(name, f"an integer in {low}..{high}", value, is_limit=is_limit)


# --------------------------------------------------------------------------------------------
# Codes of one value


class _Coding:
    """What every code shares: an integer value checked against the field's range."""

    def check(self, value: object, low: int, high: int, label: str, is_limit: bool) -> None:
        check_int(value, low, high, label, is_limit=is_limit)


@dataclass(frozen=True)
class Ue(_Coding):
    """``ue((value − offset) / scale)``; with ``keep_zero``, value 0 is the code of 0."""

    offset: int = 0
    scale: int = 1
    keep_zero: bool = False

    def raw(self, value: int) -> int:
        if self.keep_zero and value == 0:
            return 0
        return (value - self.offset) // self.scale

    def bits(self, value: int) -> int:
        return ue_bits(self.raw(value))

    def write(self, writer: BitWriter, value: int) -> None:
        write_ue(writer, self.raw(value))

    def read(self, reader: BitReader, name: str) -> int:
        raw = read_ue(reader, f"header field {name}")
        return 0 if self.keep_zero and raw == 0 else raw * self.scale + self.offset


@dataclass(frozen=True)
class Bits(_Coding):
    """``u(n)``: an ``n_bits`` unsigned integer."""

    n_bits: int

    def bits(self, value: int) -> int:
        return self.n_bits

    def write(self, writer: BitWriter, value: int) -> None:
        writer.write_uint(value, self.n_bits)

    def read(self, reader: BitReader, name: str) -> int:
        return reader.read_uint(self.n_bits, f"header field {name}")


@dataclass(frozen=True)
class Flag(Bits):
    """``u(1)`` read as a boolean."""

    n_bits: int = 1

    def write(self, writer: BitWriter, value: int) -> None:
        writer.write_bit(int(value))

    def read(self, reader: BitReader, name: str) -> bool:
        return bool(super().read(reader, name))

    def check(self, value: object, low: int, high: int, label: str, is_limit: bool) -> None:
        if not isinstance(value, bool):
            raise field_error(label, "a boolean", value, is_limit=False)


@dataclass(frozen=True)
class Code(Bits):
    """``u(n)`` holding the permanent code of a label; an unknown code is corrupt.

    ``meaning`` says which codes are valid in read errors (default: the codes themselves).
    """

    codes: Mapping[str, int] = field(default_factory=dict)
    meaning: str = ""

    def write(self, writer: BitWriter, value: Any) -> None:
        super().write(writer, self.codes[value])

    def read(self, reader: BitReader, name: str) -> Any:
        value = super().read(reader, name)
        for label, code in self.codes.items():
            if code == value:
                return label
        raise BitstreamError(
            f"header field {name}: expected a code in {self.meaning or dict(self.codes)}, "
            f"found {value}"
        )

    def check(self, value: object, low: int, high: int, label: str, is_limit: bool) -> None:
        if value not in self.codes:
            raise field_error(label, f"one of {tuple(self.codes)}", value, is_limit=False)


Coding = Ue | Bits


# --------------------------------------------------------------------------------------------
# Entries of the table


@dataclass(frozen=True)
class Rule:
    """A condition on one value, and what the error says was expected."""

    holds: Callable[[Any], bool]
    expected: str


@dataclass(frozen=True)
class Field:
    """One coded value.

    Attributes:
        name: the attribute it is read into and written from.
        coding: how it is coded.
        low, high: its range; ``bound`` may narrow ``high`` from the fields before it.
        label: its name in validation errors (default ``name``).
        wire: its name in read errors (default ``name``).
        is_limit: a size or count (a LimitExceeded when out of range) or not (a BitstreamError).
        sizes_loop: it counts the items of a list: refused above ``high`` as soon as it is
            read, before the loop runs.
        rule: a further condition on the value alone (even, odd …).
        relations: checks of the object once this field is valid (rules across fields).
    """

    name: str
    coding: Coding
    low: int = 0
    high: int = 0
    label: str = ""
    wire: str = ""
    is_limit: bool = True
    sizes_loop: bool = False
    rule: Rule | None = None
    bound: Callable[[Any], int] | None = None
    relations: tuple[Callable[[Any], None], ...] = ()

    def write(self, writer: BitWriter, value: Any) -> None:
        self.coding.write(writer, value)

    def read(self, reader: BitReader, name: str = "") -> Any:
        name = name or self.wire or self.name
        value = self.coding.read(reader, name)
        if self.sizes_loop and value > self.high:
            raise LimitExceeded(f"header field {name}: expected at most {self.high}, found {value}")
        return value

    def value_of(self, owner: Any) -> Any:
        return getattr(owner, self.name)

    def check_value(self, value: Any, owner: Any, label: str = "") -> None:
        label = label or self.label or self.name
        high = self.bound(owner) if self.bound else self.high
        self.coding.check(value, self.low, high, label, self.is_limit)
        if self.rule and not self.rule.holds(value):
            raise field_error(label, self.rule.expected, value, is_limit=False)

    def check(self, owner: Any) -> None:
        self.check_value(self.value_of(owner), owner)
        for relation in self.relations:
            relation(owner)

    def bit_range(self) -> tuple[int, int]:
        return self.coding.bits(self.low), self.coding.bits(self.high)


@dataclass(frozen=True)
class Record:
    """The fields of a list item that is an object (``kind``, which validates itself)."""

    kind: type
    fields: tuple[Field, ...]

    def write(self, writer: BitWriter, item: Any) -> None:
        for entry in self.fields:
            entry.write(writer, entry.value_of(item))

    def read(self, reader: BitReader, name: str) -> dict[str, Any]:
        """The raw values, unchecked: the object is built once the CRC matched."""
        return {f.name: f.read(reader, f"{name}.{f.wire or f.name}") for f in self.fields}

    def check_value(self, item: Any, owner: Any, label: str = "") -> None:
        if not isinstance(item, self.kind):
            raise field_error(label, f"a {self.kind.__name__}", item, is_limit=False)

    def bit_range(self) -> tuple[int, int]:
        ranges = [entry.bit_range() for entry in self.fields]
        return sum(low for low, _ in ranges), sum(high for _, high in ranges)


@dataclass(frozen=True)
class Repeated:
    """A list of items, sized by one of:

    * a :class:`Field`: the count, coded just before the items;
    * a ``str``: the name of an earlier field (``zero_grids`` has ``n_grids`` flags);
    * a ``tuple`` of labels: a fixed number of items, named by them in read errors.

    Items are named ``item[i]`` in read errors (``item`` the item field's name, or this list's
    for records), or by the fixed labels. ``text`` joins the items into a string; ``source`` is
    the attribute written and validated (default ``name``); ``rule`` applies to the whole list,
    before its items are checked; ``relations`` as for :class:`Field`.
    """

    name: str
    item: Field | Record
    count: Field | str | tuple[str, ...]
    text: bool = False
    source: str = ""
    rule: Rule | None = None
    relations: tuple[Callable[[Any], None], ...] = ()

    def write(self, writer: BitWriter, values: Any) -> None:
        if isinstance(self.count, Field):
            self.count.write(writer, len(values))
        for value in values:
            self.item.write(writer, value)

    def read(self, reader: BitReader, read_so_far: Mapping[str, Any]) -> Any:
        if isinstance(self.count, tuple):
            names = self.count
        else:
            n = (
                self.count.read(reader)
                if isinstance(self.count, Field)
                else read_so_far[self.count]
            )
            base = self.item.name if isinstance(self.item, Field) else self.name
            names = tuple(f"{base}[{index}]" for index in range(n))
        values = tuple(self.item.read(reader, name) for name in names)
        return "".join(values) if self.text else values

    def value_of(self, owner: Any) -> Any:
        return getattr(owner, self.source or self.name)

    def check(self, owner: Any) -> None:
        values = self.value_of(owner)
        if not isinstance(values, str if self.text else tuple):
            raise field_error(
                self.name, "a string" if self.text else "a tuple", values, is_limit=False
            )
        if isinstance(self.count, Field):
            self.count.check_value(len(values), owner)
        else:
            n = len(self.count) if isinstance(self.count, tuple) else getattr(owner, self.count)
            if len(values) != n:
                raise field_error(self.name, f"{n} entries", values, is_limit=False)
        if self.rule and not self.rule.holds(values):
            raise field_error(self.name, self.rule.expected, values, is_limit=False)
        for index, value in enumerate(values):
            if isinstance(self.item, Record):
                label = self.count[index] if isinstance(self.count, tuple) else ""
                self.item.check_value(value, owner, label or f"{self.name}[{index}]")
            else:
                self.item.check_value(value, owner)
        for relation in self.relations:
            relation(owner)

    def bit_range(self, sized_by: Field | None = None) -> tuple[int, int]:
        """Fewest and most bits: the count's code, then as few or as many items as allowed;
        ``sized_by`` is the earlier field a ``str`` count names."""
        count_low = count_high = 0
        if isinstance(self.count, tuple):
            n_low = n_high = len(self.count)
        else:
            sizing = self.count if isinstance(self.count, Field) else sized_by
            assert sizing is not None, f"{self.name}: the field {self.count!r} is not given"
            if sizing is self.count:
                count_low, count_high = sizing.bit_range()
            n_low, n_high = sizing.low, sizing.high
        item_low, item_high = self.item.bit_range()
        return count_low + n_low * item_low, count_high + n_high * item_high


@dataclass(frozen=True)
class Preset:
    """A run of entries sent as one ``ue`` code when their values are those of a preset.

    Code 0 is followed by the entries themselves; code ``k >= 1`` stands for ``presets[k − 1]``,
    which gives every entry's value by name (lists as tuples, records as their objects). The
    presets are part of the format: append to them, never reorder or change one.
    """

    name: str
    entries: tuple[Field | Repeated, ...]
    presets: tuple[Mapping[str, Any], ...]

    def __post_init__(self) -> None:
        names = {entry.name for entry in self.entries}
        for preset in self.presets:
            assert set(preset) == names, f"{self.name}: a preset must give {sorted(names)}"

    def value_of(self, owner: Any) -> Any:
        return owner

    def code(self, owner: Any) -> int:
        """The preset of ``owner``'s values (1-based), or 0: none, the entries follow."""
        values = {entry.name: entry.value_of(owner) for entry in self.entries}
        return next((k for k, preset in enumerate(self.presets, 1) if preset == values), 0)

    def write(self, writer: BitWriter, owner: Any) -> None:
        code = self.code(owner)
        write_ue(writer, code)
        if not code:
            write_fields(writer, owner, self.entries)

    def read(self, reader: BitReader, read_so_far: Mapping[str, Any]) -> dict[str, Any]:
        code = read_ue(reader, f"header field {self.name}")
        if code > len(self.presets):
            raise BitstreamError(
                f"header field {self.name}: expected a code in 0..{len(self.presets)}, found {code}"
            )
        return dict(self.presets[code - 1]) if code else read_fields(reader, self.entries)

    def check(self, owner: Any) -> None:
        check_fields(owner, self.entries)

    def bit_range(self) -> tuple[int, int]:
        low, high = bit_bounds(self.entries)
        return min(ue_bits(0) + low, ue_bits(1)), max(ue_bits(0) + high, ue_bits(len(self.presets)))


Entry = Field | Repeated | Preset


# --------------------------------------------------------------------------------------------
# Walking a table


def write_fields(writer: BitWriter, owner: Any, entries: tuple[Entry, ...]) -> None:
    """Append the fields of a validated ``owner``."""
    for entry in entries:
        entry.write(writer, entry.value_of(owner))


def read_fields(reader: BitReader, entries: tuple[Entry, ...]) -> dict[str, Any]:
    """The raw values, by field name, records as dicts (:func:`build` makes the objects).

    Only the counts that size a loop and the enum codes are checked here.
    """
    values: dict[str, Any] = {}
    for entry in entries:
        if isinstance(entry, Field):
            values[entry.name] = entry.read(reader)
        elif isinstance(entry, Preset):
            values.update(entry.read(reader, values))
        else:
            values[entry.name] = entry.read(reader, values)
    return values


def build(values: Mapping[str, Any], entries: tuple[Entry, ...]) -> dict[str, Any]:
    """``values`` with each list of record dicts made into its objects (which check themselves)."""
    built = dict(values)
    for entry in _flat(entries):
        if isinstance(entry, Repeated) and isinstance(entry.item, Record):
            kind = entry.item.kind
            built[entry.name] = tuple(
                item if isinstance(item, kind) else kind(**item) for item in values[entry.name]
            )
    return built


def _flat(entries: tuple[Entry, ...]) -> tuple[Field | Repeated, ...]:
    """The entries with each :class:`Preset` replaced by its own entries."""
    return tuple(
        inner
        for entry in entries
        for inner in (entry.entries if isinstance(entry, Preset) else (entry,))
    )


def check_fields(owner: Any, entries: tuple[Entry, ...]) -> None:
    """Check every field of ``owner`` in table order; raises :class:`FieldError`."""
    for entry in entries:
        entry.check(owner)


def bit_bounds(entries: tuple[Entry, ...]) -> tuple[int, int]:
    """Fewest and most bits: every value, count and list at its low and at its high end.

    The low end is a bound, not always a valid object (rules across fields are not applied);
    the high end is reached field by field, not by every combination.
    """
    fields = {entry.name: entry for entry in _flat(entries) if isinstance(entry, Field)}
    low = high = 0
    for entry in entries:
        if isinstance(entry, Repeated) and isinstance(entry.count, str):
            entry_low, entry_high = entry.bit_range(fields[entry.count])
        else:
            entry_low, entry_high = entry.bit_range()
        low, high = low + entry_low, high + entry_high
    return low, high
