"""Range coding of the latent grids with the integer ARM, in wavefront order (docs/bitstream.md).

Each latent is coded with a discretised Laplace whose ``(μ, b)`` the integer ARM
(:class:`~coolchic.bitstream.fixed_point.FixedPointArm`) computes from the already-decoded
causal neighbours of the same grid (:func:`context_offsets`, zero outside the grid). A position
``(y, x)`` belongs to wavefront step ``t = x + y·(N + 1)`` (N = ``n_ctx_rowcol``): every context
of a position lies in an earlier step, so one step is one batch (gather contexts, run the ARM,
range-code). Grids are independent, so the steps of all grids run together: step ``t`` holds
the positions of step ``t`` of every coded grid, coarsest grid first, row-major inside a grid.
When contexts also read other grids (coarser contexts, format version 3; the inter-feature
context and hyper-latent grids, format version 5), each grid's steps are delayed so that every
value read from another grid is decoded first (:class:`_Schedule`).
The whole latent section is one constriction range-coder stream
(``QuantizedLaplace(−64, 63)``, 32-bit words stored little-endian), ``Σ`` over the coded grids of
``h·w`` symbols in that order.

All-zero grids are not coded at all: the header carries one flag per grid and the decoder fills
them with zeros (docs/bitstream.md). This is a choice of this format (v5 codes them).

Where a C compiler exists, the wavefront runs in ``wavefront_kernel.c`` (:class:`_CompiledSteps`):
each step's positions, contexts and ARM, and when decoding a re-implementation of constriction's
range decoder for this model (docs/bitstream.md writes it out); numpy and constriction decode
the same symbols without one.

The encoder codes through the decoder's own routine (:func:`_code_grids`), then decodes what it
wrote and raises :class:`~coolchic.errors.BitstreamError` if anything differs.
Latents are clamped to [−64, 63] first; the clamped grids and the number of changed values are
returned so the caller can report it.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import constriction
import numpy as np

from coolchic.bitstream.constants import (
    LATENT_MAX,
    LATENT_MIN,
    MU_TABLE_SIZE,
    SCALE_TABLE_SIZE,
)
from coolchic.bitstream.fixed_point import FixedPointArm, FixedPointIfce, mu_scale_table
from coolchic.bitstream.header import max_latent_bytes
from coolchic.errors import BitstreamError, LimitExceeded
from coolchic.model import native
from coolchic.model.layout import context_offsets, grid_resolutions, ifce_sources

__all__ = [
    "EncodedLatents",
    "context_offsets",
    "decode_latents",
    "encode_latents",
    "wavefront_order",
]

_Mode = Literal["encode", "decode"]


def wavefront_order(height: int, width: int, n_ctx_rowcol: int) -> list[np.ndarray]:
    """The decoding schedule of one ``height x width`` grid, one array per wavefront step.

    Position ``(y, x)`` (raster index ``y·width + x``) is in step ``t = x + y·(N + 1)``; inside
    a step positions are row-major. Empty steps are left out. The schedule is valid for any
    width: every context offset ``(dy, dx)`` has ``dy < 0, dx <= N`` or ``dy = 0, dx < 0``, so
    its step ``t + dx + dy·(N + 1)`` is earlier. For grids at most ``N + 1`` wide each step
    holds one position and the order is plain raster order.

    Args:
        height: rows, >= 0.
        width: columns, >= 0.
        n_ctx_rowcol: N >= 1.

    Returns:
        int64 arrays of raster indices, in step order; together a permutation of
        ``range(height·width)``.
    """
    steps = _grid_steps(height, width, n_ctx_rowcol)
    if steps.size == 0:
        return []
    order = np.argsort(steps, kind="stable")  # raster order inside a step = row-major
    counts = np.bincount(steps)
    return np.split(order, np.cumsum(counts[counts > 0])[:-1])


def _grid_steps(height: int, width: int, n_ctx_rowcol: int) -> np.ndarray:
    """Wavefront step ``x + y·(N + 1)`` of every position, int64 ``[height·width]``, raster."""
    if height < 0 or width < 0:
        raise ValueError(f"grid size: expected h, w >= 0, found {height}x{width}")
    if n_ctx_rowcol < 1:
        raise ValueError(f"n_ctx_rowcol: expected >= 1, found {n_ctx_rowcol}")
    rows = np.arange(height, dtype=np.int64)[:, None]
    cols = np.arange(width, dtype=np.int64)[None, :]
    return (cols + rows * (n_ctx_rowcol + 1)).ravel()


@dataclass(frozen=True, eq=False)
class EncodedLatents:
    """Result of :func:`encode_latents`.

    Attributes:
        data: the latent section (range-coder words, little-endian).
        grids: the latents actually coded: int64 ``[h, w]`` per grid, clamped to [−64, 63].
        n_clamped: how many values the clamp changed (0 when the input was in range).
        zero_grids: per grid, True when it is all zero and therefore not coded.
    """

    data: bytes
    grids: tuple[np.ndarray, ...]
    n_clamped: int
    zero_grids: tuple[bool, ...]


def _runs(
    targets: np.ndarray, steps: np.ndarray, bounds: np.ndarray
) -> list[list[tuple[int, int, int]]]:
    """Split each step's positions (``bounds``) into runs of one target grid, skipping the
    runs of grids without inter-feature values (target −1). Positions come step by step and,
    inside a step, grid by grid, so a step holds at most one run per grid."""
    change = np.flatnonzero((np.diff(steps) != 0) | (np.diff(targets) != 0)) + 1
    starts = np.concatenate([[0], change]).tolist()
    ends = np.concatenate([change, [len(targets)]]).tolist()
    grids = targets[starts].tolist() if starts else []
    runs: list[list[tuple[int, int, int]]] = [[] for _ in range(len(bounds) - 1)]
    step = 0
    for start, end, grid in zip(starts, ends, grids, strict=True):
        while start >= bounds[step + 1]:
            step += 1
        if grid >= 0:
            runs[step].append((start, end, grid))
    return runs


class _Schedule:
    """Positions of all coded grids in one zero-padded flat buffer, grouped by step.

    Grids are stacked vertically in a buffer whose row stride is ``max(w) + 2N``; each grid has
    N zero rows above it and N zero columns on each side, so every context offset is the same
    flat offset ``dy·stride + dx`` for every grid and out-of-grid neighbours read 0.

    With P coarser contexts (format version 3), the context of ``(r, c)`` in grid g also holds
    the latent of grid ``g + p`` at ``(r >> p, c >> p)`` for p = 1 … P (0 past the coarsest
    grid: a zero slot at the end of the buffer), and grid g's steps come ``n_grids − 1 − g``
    steps later than its own wavefront's: each coarser value is then decoded at an earlier
    step (``(c >> p) + (r >> p)·(N + 1) <= c + r·(N + 1)`` and the coarser grid is at least one
    step ahead), at the cost of one step per grid.

    With an inter-feature context (format version 5) the last ``n_hyper`` grids are hyper-latent
    grids at the coarsest resolutions, and each latent of the three finest grids g also reads,
    through the IFCE, every grid k of a coarser resolution at ``((r >> 1) >> d, (c >> 1) >> d)``,
    d the resolution step from grid g + 1 to grid k. Every such grid comes after g in the
    coded order, so the same delays make each value decoded before it is read.

    The layout (origins, stride, delays, step count) is all the compiled kernel needs; the
    per-position tables of the numpy form are built only for it (``tables=True`` or
    :meth:`build_tables`): at 1080p with the inter-feature context they take 0.4 s.
    """

    def __init__(
        self,
        shapes: Sequence[tuple[int, int]],
        coded: Sequence[bool],
        n: int,
        n_coarser: int = 0,
        *,
        ifce: bool = False,
        n_hyper: int = 0,
        tables: bool = True,
    ) -> None:
        offsets = np.asarray(context_offsets(n), dtype=np.int64).reshape(-1, 2)
        self.stride = max((w for _, w in shapes), default=0) + 2 * n
        self.context_offsets = offsets[:, 0] * self.stride + offsets[:, 1]
        self.origins: list[int] = []  # flat index of (0, 0) of each grid
        row = 0
        for h, _ in shapes:
            row += n
            self.origins.append(row * self.stride + n)
            row += h
        self.zero_slot = row * self.stride + n + 1
        self.size = self.zero_slot + 1
        self.row_step = n + 1
        self.n_coarser = n_coarser
        #: Coded grids with any latent, in coded order (coarsest first), and each one's delay.
        self.coded_order = [
            index
            for index in reversed(range(len(shapes)))
            if coded[index] and shapes[index][0] * shapes[index][1]
        ]
        self.delays = [
            len(shapes) - 1 - index if n_coarser or ifce else 0 for index in range(len(shapes))
        ]
        #: Steps in all, empty ones included (the compiled kernel walks them all).
        self.n_steps = max(
            (
                self.delays[i] + shapes[i][1] - 1 + (shapes[i][0] - 1) * self.row_step + 1
                for i in self.coded_order
            ),
            default=0,
        )
        #: Latents coded in all (the compiled encoder's output size).
        self.n_positions = sum(shapes[i][0] * shapes[i][1] for i in self.coded_order)
        self.resolutions = grid_resolutions(len(shapes) - n_hyper, n_hyper)
        self.ifce_sources = ifce_sources(len(shapes) - n_hyper, n_hyper) if ifce else []
        self.shapes = [tuple(shape) for shape in shapes]
        self.positions = np.zeros(0, dtype=np.int64)
        self.bounds: list[int] = [0]
        self.coarser: np.ndarray | None = None
        self.ifce_inputs: np.ndarray | None = None
        #: Per step, the ``(start, end, grid)`` runs of positions whose latents take
        #: inter-feature values from grid ``grid``'s map: slices, not masks, in the hot loop.
        self.ifce_runs: list[list[tuple[int, int, int]]] = []
        self.has_ifce = ifce
        self._tables = False
        if tables:
            self.build_tables()

    def ifce_input(self, grid: int, column: int) -> tuple[int, int]:
        """``(origin, shift)`` of inter-feature input ``column`` of grid ``grid``: it reads
        ``(r >> shift, c >> shift)`` of the grid at ``origin``."""
        k = self.ifce_sources[grid][column]
        level = self.resolutions[grid] + 1  # the features' resolution
        return self.origins[k], 1 + self.resolutions[k] - level

    def build_tables(self) -> None:
        """Every position's flat index, coarser contexts and inter-feature inputs, in coding
        order, for the numpy form of the wavefront (once; the compiled kernel needs none)."""
        if self._tables:
            return
        self._tables = True
        ifce = self.has_ifce
        # Buffer positions fit in 32 bits for any frame up to about 2^31 latents: half the
        # memory traffic of int64 when the tables are built (at 1080p with the inter-feature
        # context they hold ten values for each of 2.8 million latents).
        index_type = np.int32 if self.size < 2**31 else np.int64
        n_inputs = max((len(s) for s in self.ifce_sources), default=0)
        target_parts: list[np.ndarray] = []
        input_parts: list[np.ndarray] = []
        # Coarsest grid first; stable sort by step keeps that order, then row-major.
        flat_parts: list[np.ndarray] = []
        step_parts: list[np.ndarray] = []
        coarser_parts: list[np.ndarray] = []
        for index in self.coded_order:
            h, w = self.shapes[index]
            steps = _grid_steps(h, w, self.row_step - 1) + self.delays[index]
            rows, cols = np.divmod(np.arange(h * w, dtype=index_type), w)
            flat_parts.append(self.origins[index] + rows * self.stride + cols)
            if ifce:
                inputs = np.full((h * w, n_inputs), self.zero_slot, dtype=index_type)
                if index < len(self.ifce_sources):
                    for column in range(len(self.ifce_sources[index])):
                        origin, shift = self.ifce_input(index, column)
                        inputs[:, column] = origin + (rows >> shift) * self.stride + (cols >> shift)
                target = index if index < len(self.ifce_sources) else -1
                target_parts.append(np.full(h * w, target, dtype=np.int8))
                input_parts.append(inputs)
            if self.n_coarser:
                coarser = np.full((h * w, self.n_coarser), self.zero_slot, dtype=index_type)
                for p in range(1, self.n_coarser + 1):
                    if index + p < len(self.shapes):
                        origin = self.origins[index + p]
                        coarser[:, p - 1] = origin + (rows >> p) * self.stride + (cols >> p)
                coarser_parts.append(coarser)
            step_parts.append(steps)
        if not flat_parts:
            self.positions = np.zeros(0, dtype=index_type)
            return
        flat = np.concatenate(flat_parts)
        steps = np.concatenate(step_parts)
        order = np.argsort(steps, kind="stable")
        self.positions = flat[order]
        if self.n_coarser:
            self.coarser = np.concatenate(coarser_parts)[order]
        counts = np.bincount(steps)
        bounds = np.concatenate([[0], np.cumsum(counts[counts > 0])])
        if ifce:
            self.ifce_inputs = np.concatenate(input_parts)[order]
            self.ifce_runs = _runs(np.concatenate(target_parts)[order], steps[order], bounds)
        self.bounds = bounds.tolist()

    def grid_view(self, buffer: np.ndarray, index: int, shape: tuple[int, int]) -> np.ndarray:
        """The ``[h, w]`` window of grid ``index`` inside the flat buffer."""
        h, w = shape
        start = self.origins[index]
        return buffer[start : start + h * self.stride].reshape(h, self.stride)[:, :w]


_KERNEL_SOURCE = Path(__file__).with_name("wavefront_kernel.c")
_GRID_FIELDS = 6  # h, w, origin, delay, map, n_inputs (see the C file)


class _Plan(ctypes.Structure):
    """The C kernel's ``plan`` (wavefront_kernel.c), field for field."""

    _fields_ = [
        ("grids", ctypes.c_void_p),
        ("n_grids", ctypes.c_int64),
        ("n_coarser", ctypes.c_int64),
        ("max_inputs", ctypes.c_int64),
        ("row_step", ctypes.c_int64),
        ("stride", ctypes.c_int64),
        ("zero_slot", ctypes.c_int64),
        ("offsets", ctypes.c_void_p),
        ("n_spatial", ctypes.c_int64),
        ("n_layers", ctypes.c_int64),
        ("dims", ctypes.c_void_p),
        ("weights", ctypes.c_void_p),
        ("biases", ctypes.c_void_p),
        ("stabiliser", ctypes.c_void_p),
        ("n_features", ctypes.c_int64),
        ("map_weights", ctypes.c_void_p),
        ("map_biases", ctypes.c_void_p),
        ("map_offsets", ctypes.c_void_p),
        ("mu_table", ctypes.c_void_p),
        ("scale_table", ctypes.c_void_p),
        ("mu_last", ctypes.c_int64),
        ("scale_last", ctypes.c_int64),
    ]


@functools.cache
def _kernel() -> ctypes.CDLL | None:
    """The compiled wavefront kernel, or None (see :mod:`coolchic.model.native`)."""
    found = native.library(_KERNEL_SOURCE)
    if found is None:
        return None
    parameters = found.coolchic_wavefront
    parameters.restype = ctypes.c_int64
    parameters.argtypes = [
        ctypes.POINTER(_Plan),
        ctypes.c_void_p,  # buffer
        *(ctypes.c_int64, ctypes.c_int64),  # first, last step
        *(ctypes.c_void_p,) * 4,  # positions, mu, scale, symbols
    ]
    decode = found.coolchic_wavefront_decode
    decode.restype = ctypes.c_int64
    decode.argtypes = [
        ctypes.POINTER(_Plan),
        ctypes.c_void_p,  # buffer
        ctypes.c_int64,  # steps
        *(ctypes.c_void_p, ctypes.c_int64),  # words, their number
    ]
    return found


class _CompiledSteps:
    """The wavefront in C (wavefront_kernel.c): positions, contexts, inter-feature values,
    ARM and table per step, and when decoding the range decoder too.

    Holds every array the C ``plan`` points to, so they live as long as it does.
    """

    def __init__(
        self,
        library: ctypes.CDLL,
        schedule: _Schedule,
        arm: FixedPointArm,
        ifce: FixedPointIfce | None,
        buffer: np.ndarray,
    ) -> None:
        layers = arm.float_layers
        assert layers is not None
        self._library = library
        self._schedule = schedule
        self._buffer = buffer
        n_inputs = max((len(sources) for sources in schedule.ifce_sources), default=0)
        rows = []
        for index in schedule.coded_order:
            h, w = schedule.shapes[index]
            has_map = ifce is not None and index < len(schedule.ifce_sources)
            row = [h, w, schedule.origins[index], schedule.delays[index]]
            row += [index, len(schedule.ifce_sources[index])] if has_map else [-1, 0]
            for p in range(1, schedule.n_coarser + 1):
                inside = index + p < len(schedule.shapes)
                row += [schedule.origins[index + p] if inside else -1, p]
            inputs = [schedule.ifce_input(index, c) for c in range(row[5])]
            inputs += [(-1, 0)] * (n_inputs - len(inputs))
            row += [value for pair in inputs for value in pair]
            rows.append(row)
        self._grids = np.array(rows, dtype=np.int64).reshape(len(rows), -1)
        self._offsets = np.ascontiguousarray(schedule.context_offsets, dtype=np.int64)
        self._dims = np.array([layers[0][0].shape[0], *(w.shape[1] for w, _ in layers)], np.int64)
        self._weights = np.concatenate([w.ravel() for w, _ in layers])
        self._biases = np.concatenate([b for _, b in layers])
        stabiliser = arm.float_stabiliser
        self._stabiliser = None if stabiliser is None else np.ascontiguousarray(stabiliser)
        maps = ifce.float_maps if ifce is not None else None
        if maps:
            self._map_weights = np.concatenate([w.ravel() for w, _ in maps])
            self._map_biases = np.concatenate([b for _, b in maps])
            self._map_offsets = np.cumsum([0, *(w.size for w, _ in maps[:-1])], dtype=np.int64)
        else:
            self._map_weights = self._map_biases = np.zeros(1)
            self._map_offsets = np.zeros(1, dtype=np.int64)
        self._mu_table, self._scale_table = mu_scale_table()
        self._plan = _Plan(
            self._grids.ctypes.data,
            len(rows),
            schedule.n_coarser,
            n_inputs,
            schedule.row_step,
            schedule.stride,
            schedule.zero_slot,
            self._offsets.ctypes.data,
            len(self._offsets),
            len(layers),
            self._dims.ctypes.data,
            self._weights.ctypes.data,
            self._biases.ctypes.data,
            None if self._stabiliser is None else self._stabiliser.ctypes.data,
            ifce.n_features if ifce is not None else 0,
            self._map_weights.ctypes.data,
            self._map_biases.ctypes.data,
            self._map_offsets.ctypes.data,
            self._mu_table.ctypes.data,
            self._scale_table.ctypes.data,
            MU_TABLE_SIZE - 1,
            SCALE_TABLE_SIZE - 1,
        )

    @classmethod
    def create(
        cls,
        schedule: _Schedule,
        arm: FixedPointArm,
        ifce: FixedPointIfce | None,
        buffer: np.ndarray,
    ) -> _CompiledSteps | None:
        """The compiled steps, or None where the kernel is missing or the networks need the
        int64 kernel (their accumulator bound is not below 2^53)."""
        library = _kernel()
        exact = arm.float_layers is not None and (ifce is None or ifce.float_maps is not None)
        if library is None or not exact or not schedule.coded_order:
            return None
        return cls(library, schedule, arm, ifce, buffer)

    def parameters(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every position in coding order: ``(flat index, μ, scale, symbol)``, the symbol
        being the value the buffer holds there (the encoder's latents)."""
        total = self._schedule.n_positions
        positions = np.zeros(total, dtype=np.int64)
        mu = np.zeros(total)
        scale = np.zeros(total)
        symbols = np.zeros(total, dtype=np.int32)
        count = self._library.coolchic_wavefront(
            ctypes.byref(self._plan),
            self._buffer.ctypes.data,
            0,
            self._schedule.n_steps,
            positions.ctypes.data,
            mu.ctypes.data,
            scale.ctypes.data,
            symbols.ctypes.data,
        )
        if count < 0:
            raise MemoryError("wavefront kernel: out of memory")
        assert count == total, (count, total)
        return positions, mu, scale, symbols

    def decode(self, words: np.ndarray) -> None:
        """Decode the latent section's words into the buffer.

        Raises:
            BitstreamError: data no encoder can have written.
        """
        words = np.ascontiguousarray(words, dtype=np.uint32)
        count = self._library.coolchic_wavefront_decode(
            ctypes.byref(self._plan),
            self._buffer.ctypes.data,
            self._schedule.n_steps,
            words.ctypes.data,
            len(words),
        )
        if count == -1:
            raise MemoryError("wavefront kernel: out of memory")
        if count == -2:
            raise BitstreamError("latent section: the range decoder failed (invalid data)")


def _code_grids(
    mode: _Mode,
    buffer: np.ndarray,
    schedule: _Schedule,
    arm: FixedPointArm,
    coder: constriction.stream.queue.RangeEncoder | constriction.stream.queue.RangeDecoder,
    ifce: FixedPointIfce | None = None,
) -> None:
    """Run the wavefront over the buffer with constriction's coder: every encode, and the
    decodes that cannot use the compiled decoder (:meth:`_CompiledSteps.decode`).

    When encoding, the compiled kernel (:class:`_CompiledSteps`) gives every symbol's Laplace
    where it can; the numpy form runs where it cannot (no C compiler, ``COOLCHIC_COMPILE=0``,
    or networks too large for the exact float kernel). Both code the same symbols with the
    same parameters.

    Args:
        mode: ``"encode"``: the buffer holds the latents, each step's symbols are encoded;
            ``"decode"``: the buffer holds zeros, each step's symbols are decoded into it.
        buffer: int8 flat padded buffer (see :class:`_Schedule`); latents fit in [−64, 63].
        schedule: positions per step (its tables are only needed by the numpy form).
        arm: the integer ARM.
        coder: a range encoder (encode) or decoder (decode).
        ifce: the integer inter-feature context, when the schedule has one.
    """
    model = constriction.stream.model.QuantizedLaplace(LATENT_MIN, LATENT_MAX)
    compiled = _CompiledSteps.create(schedule, arm, ifce, buffer)
    if compiled is not None and mode == "encode":
        _, mu, scale, symbols = compiled.parameters()
        coder.encode(symbols, model, mu, scale)
        return
    schedule.build_tables()
    mu_table, scale_table = mu_scale_table()
    offsets = schedule.context_offsets[None, :]
    positions = schedule.positions
    bounds = schedule.bounds
    coarser = schedule.coarser
    indices = arm.table_indices
    for step in range(len(bounds) - 1):
        where = positions[bounds[step] : bounds[step + 1]]
        contexts = buffer[where[:, None] + offsets]
        if coarser is not None:
            contexts = np.concatenate(
                [contexts, buffer[coarser[bounds[step] : bounds[step + 1]]]], 1
            )
        if ifce is not None:
            contexts = np.concatenate(
                [
                    contexts,
                    _ifce_features(ifce, buffer, schedule, step, bounds[step], bounds[step + 1]),
                ],
                1,
            )
        mu_index, scale_index = indices(contexts)
        mu = mu_table[mu_index]
        scale = scale_table[scale_index]
        if mode == "encode":
            coder.encode(buffer[where].astype(np.int32), model, mu, scale)
        else:
            buffer[where] = coder.decode(model, mu, scale)


def _ifce_features(
    ifce: FixedPointIfce, buffer: np.ndarray, schedule: _Schedule, step: int, start: int, end: int
) -> np.ndarray:
    """The inter-feature values of the positions ``start … end − 1`` of step ``step`` (0 for
    the grids without), from their coarser values already in the buffer."""
    assert schedule.ifce_inputs is not None
    features = np.zeros((end - start, ifce.n_features), dtype=np.int64)
    for first, last, grid in schedule.ifce_runs[step]:
        width = ifce.maps[grid][0].shape[0]
        values = buffer[schedule.ifce_inputs[first:last, :width]]
        features[first - start : last - start] = ifce.features(grid, values)
    return features


def _check_arm(
    arm: FixedPointArm,
    n_ctx_rowcol: int,
    n_coarser: int,
    ifce: FixedPointIfce | None = None,
    n_grids: int = 0,
    n_hyper: int = 0,
) -> None:
    n_features = ifce.n_features if ifce is not None else 0
    expected = len(context_offsets(n_ctx_rowcol)) + n_coarser + n_features
    if arm.n_contexts != expected:
        raise ValueError(
            f"arm: expected {expected} contexts for n_ctx_rowcol = {n_ctx_rowcol}, "
            f"{n_coarser} coarser and {n_features} inter-feature, found {arm.n_contexts}"
        )
    if ifce is not None:
        widths = [weight.shape[0] for weight, _ in ifce.maps]
        expected_widths = [len(s) for s in ifce_sources(n_grids - n_hyper, n_hyper)]
        if widths != expected_widths:
            raise ValueError(
                f"inter-feature maps: expected input widths {expected_widths} for "
                f"{n_grids - n_hyper} latent and {n_hyper} hyper grids, found {widths}"
            )
    elif n_hyper:
        raise ValueError("hyper-latent grids need an inter-feature context to read them")


def encode_latents(
    grids: Sequence[np.ndarray],
    arm: FixedPointArm,
    n_ctx_rowcol: int,
    n_coarser: int = 0,
    *,
    ifce: FixedPointIfce | None = None,
    n_hyper: int = 0,
) -> EncodedLatents:
    """Range-code integer latent grids, check that they decode back, return the section.

    Args:
        grids: integer ``[h, w]`` arrays, grid 0 (finest) first; values are clamped to
            [−64, 63] before coding.
        arm: the integer ARM the decoder will rebuild from the transmitted parameters.
        n_ctx_rowcol: N, the spatial context size.
        n_coarser: P, the coarser grids' values in each context (``arm.n_contexts`` is
            ``2N² + 2N + P``).
        ifce: the integer inter-feature context (format version 5), whose C_f values end
            the contexts of the three finest grids.
        n_hyper: how many of ``grids`` (the last ones) are hyper-latent grids.

    Returns:
        :class:`EncodedLatents` with the bytes, the clamped grids, the clamp count and the
        all-zero flags (the header must carry them).

    Raises:
        TypeError: float grids.
        ValueError: grids that are not 2-D, or an ARM of the wrong width.
        BitstreamError: the section does not decode back to the clamped grids.
    """
    _check_arm(arm, n_ctx_rowcol, n_coarser, ifce, len(grids), n_hyper)
    clamped: list[np.ndarray] = []
    n_clamped = 0
    for index, grid in enumerate(grids):
        array = np.asarray(grid)
        if array.dtype.kind not in "iu":
            raise TypeError(f"grid {index}: expected integer latents, found dtype {array.dtype}")
        if array.ndim != 2:
            raise ValueError(f"grid {index}: expected a 2-D array, found shape {array.shape}")
        array = array.astype(np.int64)
        inside = np.clip(array, LATENT_MIN, LATENT_MAX)
        n_clamped += int(np.count_nonzero(inside != array))
        inside.setflags(write=False)
        clamped.append(inside)
    shapes = [(int(g.shape[0]), int(g.shape[1])) for g in clamped]
    zero_grids = tuple(not bool(np.any(g)) for g in clamped)
    schedule = _Schedule(
        shapes,
        [not z for z in zero_grids],
        n_ctx_rowcol,
        n_coarser,
        ifce=ifce is not None,
        n_hyper=n_hyper,
        tables=False,
    )
    buffer = np.zeros(schedule.size, dtype=np.int8)
    for index, grid in enumerate(clamped):
        if not zero_grids[index]:
            schedule.grid_view(buffer, index, shapes[index])[...] = grid
    encoder = constriction.stream.queue.RangeEncoder()
    _code_grids("encode", buffer, schedule, arm, encoder, ifce)
    data = encoder.get_compressed().astype("<u4").tobytes()
    decoded = decode_latents(
        data,
        shapes,
        arm,
        n_ctx_rowcol,
        zero_grids=zero_grids,
        n_coarser=n_coarser,
        ifce=ifce,
        n_hyper=n_hyper,
    )
    for index, (sent, back) in enumerate(zip(clamped, decoded, strict=True)):
        if not np.array_equal(sent, back):
            raise BitstreamError(
                f"latent grid {index}: the encoder's own decoding differs from the coded latents "
                f"({int(np.count_nonzero(sent != back))} values)"
            )
    return EncodedLatents(data, tuple(clamped), n_clamped, zero_grids)


def decode_latents(
    data: bytes,
    shapes: Sequence[tuple[int, int]],
    arm: FixedPointArm,
    n_ctx_rowcol: int,
    *,
    zero_grids: Sequence[bool] | None = None,
    n_coarser: int = 0,
    ifce: FixedPointIfce | None = None,
    n_hyper: int = 0,
) -> list[np.ndarray]:
    """Decode the latent section.

    Args:
        data: the latent section (a multiple of 4 bytes).
        shapes: ``(h, w)`` of each grid, grid 0 first.
        arm: the integer ARM.
        n_ctx_rowcol: N.
        zero_grids: per grid, True when it was not coded (all zero); default: all coded.
        n_coarser: P, the coarser grids' values in each context (format version 3).
        ifce: the integer inter-feature context (format version 5), or None.
        n_hyper: how many of the grids (the last ones) are hyper-latent grids.

    Returns:
        int64 ``[h, w]`` arrays in [−64, 63], grid 0 first.

    Raises:
        BitstreamError: a section whose length is not a multiple of 4, or data the range coder
            cannot decode.
        LimitExceeded: a section larger than the coded latents can produce.
    """
    _check_arm(arm, n_ctx_rowcol, n_coarser, ifce, len(shapes), n_hyper)
    shapes = [(int(h), int(w)) for h, w in shapes]
    flags = tuple(bool(z) for z in zero_grids) if zero_grids is not None else (False,) * len(shapes)
    if len(flags) != len(shapes):
        raise ValueError(f"zero_grids: expected {len(shapes)} flags, found {len(flags)}")
    n_symbols = sum(h * w for (h, w), zero in zip(shapes, flags, strict=True) if not zero)
    if len(data) % 4:
        raise BitstreamError(
            f"latent section: expected a multiple of 4 bytes, found {len(data)} bytes"
        )
    if len(data) > max_latent_bytes(n_symbols):
        raise LimitExceeded(
            f"latent section: expected at most {max_latent_bytes(n_symbols)} bytes for "
            f"{n_symbols} latents, found {len(data)}"
        )
    schedule = _Schedule(
        shapes,
        [not z for z in flags],
        n_ctx_rowcol,
        n_coarser,
        ifce=ifce is not None,
        n_hyper=n_hyper,
        tables=False,
    )
    buffer = np.zeros(schedule.size, dtype=np.int8)
    words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
    compiled = _CompiledSteps.create(schedule, arm, ifce, buffer)
    if compiled is not None:
        compiled.decode(words)
    else:
        decoder = constriction.stream.queue.RangeDecoder(words)
        try:
            _code_grids("decode", buffer, schedule, arm, decoder, ifce)
        except (AssertionError, ValueError, KeyError, RuntimeError) as error:
            raise BitstreamError(f"latent section: the range decoder failed ({error})") from None
    return [schedule.grid_view(buffer, i, shape).astype(np.int64) for i, shape in enumerate(shapes)]
