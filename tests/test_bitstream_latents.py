"""Latent range coding: schedule validity, identity, reference contexts, determinism."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import constriction
import numpy as np
import pytest

from coolchic.bitstream import latents
from coolchic.bitstream.constants import LATENT_MAX, LATENT_MIN
from coolchic.bitstream.fixed_point import (
    FixedPointArm,
    FixedPointIfce,
    QuantizedLayer,
    mu_scale_table,
)
from coolchic.bitstream.latents import (
    EncodedLatents,
    _Schedule,
    context_offsets,
    decode_latents,
    encode_latents,
    wavefront_order,
)
from coolchic.errors import BitstreamError, LimitExceeded
from coolchic.model.layout import coded_grid_shapes, ifce_inputs


def random_arm(
    n_ctx_rowcol: int, seed: int = 0, hidden: tuple[int, ...] = (16, 16), n_coarser: int = 0
) -> FixedPointArm:
    rng = np.random.default_rng(seed)
    width = 2 * n_ctx_rowcol * (n_ctx_rowcol + 1) + n_coarser
    layers = []
    for out in hidden:
        layers.append(
            (
                np.round(rng.normal(0, 0.1, (out, width)) * 256).astype(np.int64),
                np.round(rng.normal(0, 0.1, out) * 256).astype(np.int64),
                8,
                8,
            )
        )
        width = out
    output = (
        np.round(rng.normal(0, 0.2, (2, width)) * 256).astype(np.int64),
        np.array([0, 4 * 256 + 100]),
        8,
        8,
    )
    return FixedPointArm.from_quantized(layers, output)


def random_grids(shapes: list[tuple[int, int]], seed: int, scale: float = 2.0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.round(rng.laplace(0, scale, shape)).astype(np.int64) for shape in shapes]


def round_trip(grids: list[np.ndarray], arm: FixedPointArm, n: int) -> EncodedLatents:
    encoded = encode_latents(grids, arm, n)
    decoded = decode_latents(
        encoded.data, [g.shape for g in grids], arm, n, zero_grids=encoded.zero_grids
    )
    for sent, back in zip(encoded.grids, decoded, strict=True):
        assert back.dtype == np.int64 and np.array_equal(sent, back)
    return encoded


@pytest.fixture(params=["compiled", "numpy"])
def form(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with the compiled wavefront (wavefront_kernel.c: steps and range decoder)
    and with the numpy form that runs without a C compiler; both must give the same bytes."""
    if request.param == "compiled":
        assert latents._kernel() is not None, "the test machine has a C compiler"
    else:
        monkeypatch.setattr(latents, "_kernel", lambda: None)
    return request.param


def test_context_offsets_are_the_causal_half_window() -> None:
    offsets = context_offsets(3)
    assert len(offsets) == 24 and len(context_offsets(2)) == 12 and len(context_offsets(1)) == 4
    assert offsets[0] == (-3, -3) and offsets[6] == (-3, 3) and offsets[-1] == (0, -1)
    assert list(offsets) == sorted(offsets)  # raster order of the window
    assert all(dy < 0 or (dy == 0 and dx < 0) for dy, dx in offsets)


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (5, 1), (7, 9), (64, 48), (0, 4)])
def test_wavefront_decodes_every_context_first(shape: tuple[int, int], n: int) -> None:
    h, w = shape
    steps = wavefront_order(h, w, n)
    order = np.concatenate(steps) if steps else np.zeros(0, np.int64)
    assert sorted(order.tolist()) == list(range(h * w))  # a permutation
    step_of = np.empty(h * w, np.int64)
    for index, positions in enumerate(steps):
        assert positions.size and np.all(np.diff(positions) > 0)  # row-major inside a step
        step_of[positions] = index
    for position in range(h * w):
        y, x = divmod(position, w)
        for dy, dx in context_offsets(n):
            if 0 <= y + dy < h and 0 <= x + dx < w:
                assert step_of[(y + dy) * w + x + dx] < step_of[position]
    if w <= n + 1:  # narrow grids: plain raster order, one position per step
        assert order.tolist() == list(range(h * w)) and all(s.size == 1 for s in steps)
    if h * w and w >= n + 1:  # no empty step: W + (H - 1)(N + 1) steps
        assert len(steps) == w + (h - 1) * (n + 1)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_random_latents_round_trip(n: int, form: str) -> None:
    shapes = [(33, 47), (17, 24), (9, 12), (5, 6), (3, 3), (2, 2), (1, 1)]
    arm = random_arm(n, seed=n)
    encoded = round_trip(random_grids(shapes, seed=n), arm, n)
    assert encoded.n_clamped == 0 and len(encoded.data) % 4 == 0
    assert len(encoded.data) < sum(h * w for h, w in shapes)  # well under 8 bits per latent


def test_out_of_range_values_are_clamped_and_reported(form: str) -> None:
    grids = random_grids([(12, 10), (6, 5)], seed=3, scale=30.0)
    grids[0][0, 0], grids[0][1, 1], grids[1][2, 2] = 1000, -65, 64
    expected = sum(int(np.count_nonzero((g < LATENT_MIN) | (g > LATENT_MAX))) for g in grids)
    encoded = round_trip(grids, random_arm(3), 3)
    assert encoded.n_clamped == expected >= 3
    assert (
        encoded.grids[0][0, 0] == 63
        and encoded.grids[0][1, 1] == -64
        and encoded.grids[1][2, 2] == 63
    )
    assert all(g.min() >= LATENT_MIN and g.max() <= LATENT_MAX for g in encoded.grids)


def test_zero_empty_and_tiny_grids(form: str) -> None:
    arm = random_arm(2)
    grids = [
        np.zeros((8, 8), np.int64),
        np.ones((4, 4), np.int64),
        np.zeros((2, 2), np.int64),
        np.full((1, 1), -5),
    ]
    encoded = round_trip(grids, arm, 2)
    assert encoded.zero_grids == (True, False, True, False)
    all_zero = round_trip([np.zeros((5, 7), np.int64), np.zeros((3, 4), np.int64)], arm, 2)
    assert all_zero.data == b"" and all_zero.zero_grids == (True, True)
    assert decode_latents(b"", [(5, 7)], arm, 2, zero_grids=[True])[0].shape == (5, 7)
    single = round_trip([np.full((1, 1), 17)], arm, 2)
    assert single.zero_grids == (False,)
    assert round_trip([np.zeros((0, 3), np.int64)], arm, 2).data == b""
    assert round_trip([], arm, 2).data == b""


def _reference_encode(
    grids: list[np.ndarray], arm: FixedPointArm, n: int, n_coarser: int = 0
) -> bytes:
    """Naive coder: contexts gathered one position at a time, coarsest grid first within a step;
    with coarser contexts, grid g's steps come ``len(grids) − 1 − g`` later (format version 3)."""
    mu_table, scale_table = mu_scale_table()
    model = constriction.stream.model.QuantizedLaplace(LATENT_MIN, LATENT_MAX)
    encoder = constriction.stream.queue.RangeEncoder()
    schedule = []
    for index, grid in enumerate(grids):
        if not grid.any():
            continue  # an all-zero grid is flagged in the header, not coded
        h, w = grid.shape
        delay = len(grids) - 1 - index if n_coarser else 0
        for y in range(h):
            for x in range(w):
                schedule.append((x + y * (n + 1) + delay, -index, y, x, index))
    for _, _, y, x, index in sorted(schedule):
        grid = grids[index]
        h, w = grid.shape
        context = [
            grid[y + dy, x + dx] if 0 <= y + dy < h and 0 <= x + dx < w else 0
            for dy, dx in context_offsets(n)
        ]
        for p in range(1, n_coarser + 1):
            context.append(grids[index + p][y >> p, x >> p] if index + p < len(grids) else 0)
        mu_index, scale_index = arm(np.array([context], np.int64))
        encoder.encode(
            np.array([grid[y, x]], np.int32), model, mu_table[mu_index], scale_table[scale_index]
        )
    return encoder.get_compressed().astype("<u4").tobytes()


@pytest.mark.parametrize("n", [1, 3])
def test_stream_matches_a_naive_reference_coder(n: int, form: str) -> None:
    grids = random_grids([(9, 11), (5, 6), (3, 3)], seed=7)
    arm = random_arm(n, seed=11)
    assert encode_latents(grids, arm, n).data == _reference_encode(grids, arm, n)


@pytest.mark.parametrize(("n", "n_coarser"), [(1, 1), (2, 2), (3, 3)])
def test_coarser_contexts_round_trip_and_match_the_reference_coder(
    n: int, n_coarser: int, form: str
) -> None:
    """Odd grid sizes (the ceil halving), a zero grid between coded ones, and latents whose
    scale follows the coarser grid, so that a coarser value read too early or from the wrong
    place would change the bytes or fail to decode."""
    shapes = [(13, 11), (7, 6), (4, 3), (2, 2), (1, 1)]
    grids = random_grids(shapes, seed=n)
    grids[2][...] = 0
    arm = random_arm(n, seed=5 + n, n_coarser=n_coarser)
    encoded = encode_latents(grids, arm, n, n_coarser)
    assert encoded.data == _reference_encode(grids, arm, n, n_coarser)
    assert encoded.zero_grids[2] and not encoded.zero_grids[0]
    decoded = decode_latents(
        encoded.data, shapes, arm, n, zero_grids=encoded.zero_grids, n_coarser=n_coarser
    )
    assert all(np.array_equal(a, b) for a, b in zip(encoded.grids, decoded, strict=True))
    with pytest.raises(ValueError, match="contexts"):
        encode_latents(grids, arm, n)  # the ARM reads coarser values: P must be given


def _reference_ifce_encode(
    grids: list[np.ndarray], arm: FixedPointArm, ifce: FixedPointIfce, n: int, n_hyper: int
) -> bytes:
    """Naive coder with an inter-feature context (format version 5), one position at a time:
    grid g (of the three finest) reads, at its parent (y >> 1, x >> 1), every grid of a coarser
    resolution, and its features are ``clip(floor(W·v + b + ½), −64, 63)`` computed in exact
    rationals; every grid's steps come ``len(grids) − 1 − g`` later."""
    mu_table, scale_table = mu_scale_table()
    model = constriction.stream.model.QuantizedLaplace(LATENT_MIN, LATENT_MAX)
    encoder = constriction.stream.queue.RangeEncoder()
    n_grids = len(grids) - n_hyper
    resolutions = [*range(n_grids), *range(n_grids - n_hyper, n_grids)]
    schedule = []
    for index, grid in enumerate(grids):
        if not grid.any():
            continue
        h, w = grid.shape
        for y in range(h):
            for x in range(w):
                step = x + y * (n + 1) + len(grids) - 1 - index
                schedule.append((step, -index, y, x, index))
    for _, _, y, x, index in sorted(schedule):
        grid = grids[index]
        h, w = grid.shape
        context = [
            int(grid[y + dy, x + dx]) if 0 <= y + dy < h and 0 <= x + dx < w else 0
            for dy, dx in context_offsets(n)
        ]
        features = [0] * ifce.n_features
        if index < len(ifce.maps):
            level = resolutions[index] + 1
            values = [
                int(grids[k][(y >> 1) >> (r - level), (x >> 1) >> (r - level)])
                for k, r in enumerate(resolutions)
                if r > resolutions[index]
            ]
            weight, bias = ifce.maps[index]  # 32 fractional bits, bias + 2^31
            for f in range(ifce.n_features):
                exact = sum(v * int(weight[j, f]) for j, v in enumerate(values)) + int(bias[f])
                features[f] = min(max(exact >> 32, LATENT_MIN), LATENT_MAX)
        mu_index, scale_index = arm(np.array([context + features], np.int64))
        encoder.encode(
            np.array([grid[y, x]], np.int32), model, mu_table[mu_index], scale_table[scale_index]
        )
    return encoder.get_compressed().astype("<u4").tobytes()


def random_ifce(n_grids: int, n_hyper: int, n_features: int, seed: int) -> FixedPointIfce:
    rng = np.random.default_rng(seed)
    return FixedPointIfce.from_quantized(
        [
            QuantizedLayer(
                np.round(rng.normal(0, 0.5, (n_features, n_in)) * 256).astype(np.int64),
                np.round(rng.normal(0, 2, n_features) * 64).astype(np.int64),
                8,
                6,
            )
            for n_in in ifce_inputs(n_grids, n_hyper)
        ]
    )


@pytest.mark.parametrize(("n", "n_hyper", "n_features"), [(1, 0, 1), (2, 2, 2), (3, 3, 3)])
def test_inter_feature_context_round_trips_and_matches_the_reference_coder(
    n: int, n_hyper: int, n_features: int, form: str
) -> None:
    """Odd sizes, a zero grid among the coded ones, hyper-latent grids after the latents: a
    coarser value read too early, from the wrong place or rounded otherwise changes the
    bytes or fails to decode."""
    n_grids = 5
    shapes = coded_grid_shapes(13, 11, n_grids, n_hyper)
    grids = random_grids(shapes, seed=20 + n)
    grids[3][...] = 0
    arm = random_arm(n, seed=30 + n, n_coarser=n_features)
    ifce = random_ifce(n_grids, n_hyper, n_features, seed=n)
    encoded = encode_latents(grids, arm, n, ifce=ifce, n_hyper=n_hyper)
    assert encoded.data == _reference_ifce_encode(grids, arm, ifce, n, n_hyper)
    decoded = decode_latents(
        encoded.data, shapes, arm, n, zero_grids=encoded.zero_grids, ifce=ifce, n_hyper=n_hyper
    )
    assert all(np.array_equal(a, b) for a, b in zip(encoded.grids, decoded, strict=True))
    with pytest.raises(ValueError, match="contexts"):
        encode_latents(grids, arm, n, n_hyper=n_hyper)  # the ARM reads C_f more values


def test_integer_inter_features_are_the_rounded_map() -> None:
    """floor(x + ½) of the exact dyadic value, clipped to the latent range, in int64."""
    rng = np.random.default_rng(4)
    layer = QuantizedLayer(
        rng.integers(-(2**15), 2**15, (3, 5)), rng.integers(-(2**15), 2**15, 3), 9, 12
    )
    ifce = FixedPointIfce.from_quantized([layer])
    values = rng.integers(-64, 64, (200, 5))
    exact = values @ layer.weight.T.astype(np.float64) / 2**9 + layer.bias / 2**12
    expected = np.clip(np.floor(exact + 0.5), LATENT_MIN, LATENT_MAX)
    assert np.array_equal(ifce.features(0, values), expected)
    assert ifce.accumulator_bound < 2**62


_CHILD = """
import sys
import numpy as np
import torch
torch.set_num_threads(1)
sys.path.insert(0, sys.argv[1])
from test_bitstream_latents import random_arm
from coolchic.bitstream.latents import decode_latents
payload = np.load(sys.argv[2])
shapes = [tuple(s) for s in payload["shapes"]]
grids = decode_latents(payload["data"].tobytes(), shapes, random_arm(3, seed=5), 3)
np.savez(sys.argv[3], *grids)
"""


def test_decoding_in_a_fresh_process_with_other_thread_counts(tmp_path: Path) -> None:
    import torch

    torch.set_num_threads(2)
    shapes = [(40, 56), (20, 28), (10, 14)]
    grids = random_grids(shapes, seed=9)
    encoded = encode_latents(grids, random_arm(3, seed=5), 3)
    np.savez(
        tmp_path / "in.npz", data=np.frombuffer(encoded.data, np.uint8), shapes=np.array(shapes)
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    subprocess.run(
        [
            sys.executable,
            "-c",
            _CHILD,
            str(Path(__file__).parent),
            str(tmp_path / "in.npz"),
            str(tmp_path / "out.npz"),
        ],
        check=True,
        env=env,
        timeout=120,
    )
    out = np.load(tmp_path / "out.npz")
    for index, grid in enumerate(encoded.grids):
        assert np.array_equal(out[f"arr_{index}"], grid)


def test_corrupt_or_hostile_sections(form: str) -> None:
    arm = random_arm(3)
    shapes = [(16, 16), (8, 8)]
    encoded = encode_latents(random_grids(shapes, seed=1), arm, 3)
    with pytest.raises(BitstreamError, match="multiple of 4"):
        decode_latents(encoded.data[:-1], shapes, arm, 3)
    with pytest.raises(LimitExceeded):
        decode_latents(bytes(4 * 1000), shapes, arm, 3)
    with pytest.raises(ValueError, match="contexts"):
        decode_latents(encoded.data, shapes, random_arm(2), 3)
    rng = np.random.default_rng(0)
    for length in (0, 4, 8, len(encoded.data)):
        for _ in range(20):
            data = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
            start = time.perf_counter()
            try:
                grids = decode_latents(data, shapes, arm, 3)
            except BitstreamError:
                continue
            assert [g.shape for g in grids] == shapes
            assert all(g.min() >= LATENT_MIN and g.max() <= LATENT_MAX for g in grids)
            assert time.perf_counter() - start < 1.0


def test_refuses_float_latents() -> None:
    with pytest.raises(TypeError, match="integer"):
        encode_latents([np.zeros((3, 3))], random_arm(1), 1)
    with pytest.raises(ValueError, match="2-D"):
        encode_latents([np.zeros(3, np.int64)], random_arm(1), 1)


@pytest.mark.parametrize("weight_exp", [0, 4, 9, 16])
def test_float_inter_features_equal_the_integer_ones(weight_exp: int) -> None:
    """The float64 kernel gives the int64 kernel's features bit for bit wherever it runs (a
    proven bound under 2^53); the largest weights fall back to int64."""
    rng = np.random.default_rng(weight_exp)
    layer = QuantizedLayer(
        rng.integers(-(2**15), 2**15, (2, 9)), rng.integers(-(2**15), 2**15, 2), weight_exp, 0
    )
    fast = FixedPointIfce.from_quantized([layer])
    exact = FixedPointIfce(fast.maps, float_kernel=False)
    values = rng.integers(-64, 65, (5000, 9))
    values[:4] = np.array([64, -64, 63, -1])[:, None]  # the input range's extremes
    assert exact._float_maps is None
    assert (fast._float_maps is not None) == (fast.accumulator_bound < 2**53) == (weight_exp > 0)
    assert np.array_equal(fast.features(0, values), exact.features(0, values))


def test_schedule_tables_hold_32_bit_positions() -> None:
    """The wavefront tables of a 1080p frame with the inter-feature context (2.8 million
    latents, ten positions each) are int32, not int64: half the memory and its traffic."""
    shapes = coded_grid_shapes(1080, 1920, 7, 3)
    schedule = _Schedule(shapes, [True] * len(shapes), 2, ifce=True, n_hyper=3)
    assert schedule.ifce_inputs is not None
    assert schedule.positions.dtype == schedule.ifce_inputs.dtype == np.int32
    assert int(schedule.positions.max()) < schedule.size < 2**31


def test_schedule_runs_cover_the_feature_grids_step_by_step() -> None:
    """Each step's inter-feature runs are slices of that step lying in one grid, and together
    they cover every latent of the grids that take inter-feature values, once."""
    shapes = coded_grid_shapes(40, 56, 5, 2)
    n_feature_grids = len(ifce_inputs(5, 2))
    schedule = _Schedule(shapes, [True] * len(shapes), 2, ifce=True, n_hyper=2)
    covered = 0
    for step, runs in enumerate(schedule.ifce_runs):
        for first, last, grid in runs:
            assert schedule.bounds[step] <= first < last <= schedule.bounds[step + 1]
            rows = (schedule.positions[first:last] - schedule.origins[grid]) // schedule.stride
            assert rows.min() >= 0 and rows.max() < shapes[grid][0]
            covered += last - first
    assert covered == sum(h * w for h, w in shapes[:n_feature_grids])


@pytest.mark.parametrize("log_scale", [-120.0, 4.0, 120.0])
def test_compiled_range_decoder_reads_constriction_at_the_extremes(
    log_scale: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compiled decoder re-implements constriction's range decoder and leaky Laplace. Here
    every latent is drawn uniformly over [−64, 63], μ follows the left neighbour over the whole
    range and the scale is pinned to the table's smallest entry (most symbols then sit in the
    leaky tail, probability 2^-24), to b = 1, or to the largest: any difference in a
    cumulative, a rounding or a renormalisation breaks the round trip."""
    n = 1
    weight = np.zeros((2, 4), np.int64)
    weight[0, 3] = 256  # μ = left neighbour (context 3 for N = 1)
    bias = np.array([0, round(log_scale * 256)], np.int64)
    arm = FixedPointArm.from_quantized([], (weight, bias, 8, 8))
    rng = np.random.default_rng(int(log_scale) + 200)
    grids = [rng.integers(LATENT_MIN, LATENT_MAX + 1, shape) for shape in [(40, 30), (20, 15)]]
    compiled = encode_latents(grids, arm, n)  # decoded by the compiled decoder inside
    monkeypatch.setattr(latents, "_kernel", lambda: None)
    assert encode_latents(grids, arm, n).data == compiled.data  # numpy form, constriction
    assert all(np.array_equal(a, b) for a, b in zip(compiled.grids, grids, strict=True))
    monkeypatch.undo()
    decoded = decode_latents(compiled.data, [g.shape for g in grids], arm, n)
    assert all(np.array_equal(a, b) for a, b in zip(decoded, grids, strict=True))
    if log_scale < 0:  # mostly tail symbols: close to 24 bits each
        assert len(compiled.data) * 8 > 20 * sum(g.size for g in grids)


def test_the_compiled_wavefront_is_the_one_that_runs() -> None:
    """Where a C compiler exists (every test machine) the compiled kernel runs: same positions
    and Laplace parameters as the numpy form, and none of its per-position tables built."""
    arm = random_arm(2)
    shapes = [(12, 10), (6, 5)]
    schedule = _Schedule(shapes, [True, True], 2, tables=False)
    buffer = np.zeros(schedule.size, np.int8)
    for index, grid in enumerate(random_grids(shapes, seed=4)):
        schedule.grid_view(buffer, index, shapes[index])[...] = grid
    compiled = latents._CompiledSteps.create(schedule, arm, None, buffer)
    assert compiled is not None
    positions, mu, scale, symbols = compiled.parameters()
    assert positions.size == schedule.n_positions == 150 and schedule.positions.size == 0
    schedule.build_tables()
    assert np.array_equal(positions, schedule.positions)
    assert np.array_equal(symbols, buffer[positions])
    contexts = buffer[positions[:, None] + schedule.context_offsets[None, :]]
    expected_mu, expected_scale = arm.laplace_params(contexts)
    assert np.array_equal(mu, expected_mu) and np.array_equal(scale, expected_scale)
    big = FixedPointArm(arm.layers, arm.n_contexts, float_kernel=False)
    assert latents._CompiledSteps.create(schedule, big, None, buffer) is None
