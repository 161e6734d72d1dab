"""ARM context, MLP and discretised-Laplace rate."""

from __future__ import annotations

import math

import constriction
import numpy as np
import pytest
import torch

from coolchic.bitstream.constants import LATENT_MAX, LATENT_MIN
from coolchic.model.arm import (
    LOG_SCALE_MAX,
    LOG_SCALE_MIN,
    MAX_BITS_PER_SYMBOL,
    Arm,
    ContextGather,
    context_index,
    context_offsets,
    gather_contexts,
    laplace_rate_bits,
    scale_from_raw,
)


def _slow_contexts(grid: torch.Tensor, n_ctx_rowcol: int) -> torch.Tensor:
    """Reference: one python loop per position and offset."""
    h, w = grid.shape[-2:]
    offsets = context_offsets(n_ctx_rowcol)
    out = torch.zeros(h * w, len(offsets), dtype=grid.dtype)
    for r in range(h):
        for c in range(w):
            for k, (dy, dx) in enumerate(offsets):
                if 0 <= r + dy < h and 0 <= c + dx < w:
                    out[r * w + c, k] = grid[0, 0, r + dy, c + dx]
    return out


def test_context_offsets_count_and_raster_order() -> None:
    assert len(context_offsets(3)) == 24
    assert len(context_offsets(2)) == 12
    assert len(context_offsets(1)) == 4
    assert context_offsets(2) == (
        (-2, -2), (-2, -1), (-2, 0), (-2, 1), (-2, 2),
        (-1, -2), (-1, -1), (-1, 0), (-1, 1), (-1, 2),
        (0, -2), (0, -1),
    )  # fmt: skip
    for n in (1, 2, 3, 4):
        offsets = context_offsets(n)
        # First (2N+1)^2 - 1)/2 positions of the window in raster order, all strictly causal.
        window = [(dy, dx) for dy in range(-n, n + 1) for dx in range(-n, n + 1)]
        assert offsets == tuple(window[: ((2 * n + 1) ** 2 - 1) // 2])
    with pytest.raises(ValueError):
        context_offsets(0)


@pytest.mark.parametrize(("h", "w"), [(7, 5), (1, 1), (1, 2), (2, 1), (3, 9), (9, 2)])
@pytest.mark.parametrize("n_ctx_rowcol", [1, 2, 3])
def test_gather_matches_a_slow_loop(h: int, w: int, n_ctx_rowcol: int) -> None:
    grid = torch.randn(1, 1, h, w, generator=torch.Generator().manual_seed(h * 10 + w))
    torch.testing.assert_close(
        gather_contexts(grid, n_ctx_rowcol), _slow_contexts(grid, n_ctx_rowcol), rtol=0, atol=0
    )


def test_gather_over_concatenated_grids_keeps_grids_apart() -> None:
    shapes = [(7, 5), (4, 3), (2, 2), (1, 1)]
    grids = [torch.randn(1, 1, h, w) for h, w in shapes]
    flat = torch.cat([g.reshape(-1) for g in grids])
    contexts = ContextGather(shapes, 3)(flat)
    expected = torch.cat([_slow_contexts(g, 3) for g in grids])
    torch.testing.assert_close(contexts, expected, rtol=0, atol=0)


def test_gather_gradient_matches_autograd_of_plain_indexing() -> None:
    shapes = [(6, 5), (3, 3), (2, 2), (1, 1)]
    n_total = sum(h * w for h, w in shapes)
    flat = torch.randn(n_total, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(n_total, 24, dtype=torch.float64)
    (ContextGather(shapes, 3)(flat) * weights).sum().backward()
    ours = flat.grad.clone()
    flat.grad = None
    index = context_index(shapes, 3).long()
    padded = torch.cat([flat, flat.new_zeros(1)])
    (padded[index] * weights).sum().backward()
    torch.testing.assert_close(ours, flat.grad)


def test_context_is_causal() -> None:
    """Changing latent p changes neither its own context nor any earlier position's."""
    h, w = 6, 5
    grid = torch.randn(1, 1, h, w)
    base = gather_contexts(grid, 3)
    for p in range(h * w):
        changed = grid.clone()
        changed.view(-1)[p] += 1.0
        contexts = gather_contexts(changed, 3)
        assert torch.equal(contexts[: p + 1], base[: p + 1]), p
    # And via the index: every in-grid neighbour of latent q precedes q.
    index = context_index([(h, w)], 3).long()
    rows = torch.arange(h * w).unsqueeze(1).expand_as(index)
    inside = index < h * w
    assert torch.all(index[inside] < rows[inside])


def test_scale_parameterisation_range() -> None:
    raw = torch.tensor([-100.0, 4.0, 100.0])
    torch.testing.assert_close(
        scale_from_raw(raw), torch.tensor([math.exp(LOG_SCALE_MIN), 1.0, math.exp(LOG_SCALE_MAX)])
    )


def _reference_bits(y: torch.Tensor, mu: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """−log2(F(y + ½) − F(y − ½)) in float64 with the textbook Laplace CDF."""
    y, mu, b = (t.double() for t in (y, mu, b))

    def cdf(x: torch.Tensor) -> torch.Tensor:
        d = x - mu
        return torch.where(d < 0, 0.5 * torch.exp(d / b), 1 - 0.5 * torch.exp(-d / b))

    return -torch.log2(cdf(y + 0.5) - cdf(y - 0.5))


def test_rate_matches_a_float64_reference_in_normal_ranges() -> None:
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(-12, 13, (5000,), generator=gen).float()
    mu = torch.rand(5000, generator=gen) * 10 - 5
    b = torch.exp(torch.rand(5000, generator=gen) * 5 - 2)  # 0.14 … 20
    ref = _reference_bits(y, mu, b)
    keep = ref < 15.0
    ours = laplace_rate_bits(y, mu, b).double()
    torch.testing.assert_close(ours[keep], ref[keep], rtol=1e-4, atol=1e-4)
    assert torch.all(ours <= MAX_BITS_PER_SYMBOL)


@pytest.mark.parametrize(
    ("y", "mu", "b"),
    [
        (200.0, 0.0, math.exp(LOG_SCALE_MIN)),
        (-200.0, 0.0, math.exp(LOG_SCALE_MIN)),
        (0.0, 0.0, math.exp(LOG_SCALE_MAX)),
        (0.0, 0.0, math.exp(LOG_SCALE_MIN)),
        (0.5, 0.0, 1.0),
        (0.49999, 0.0, 1.0),
        (1e4, -1e4, math.exp(LOG_SCALE_MAX)),
        (3.0, 3.0, 0.01),
    ],
)
def test_rate_and_gradients_are_finite_at_extremes(y: float, mu: float, b: float) -> None:
    y_t = torch.tensor([y], requires_grad=True)
    mu_t = torch.tensor([mu], requires_grad=True)
    b_t = torch.tensor([b], requires_grad=True)
    bits = laplace_rate_bits(y_t, mu_t, b_t)
    bits.sum().backward()
    assert torch.isfinite(bits).all()
    assert 0.0 <= bits.item() <= MAX_BITS_PER_SYMBOL
    for t in (y_t, mu_t, b_t):
        assert t.grad is not None and torch.isfinite(t.grad).all()


def test_far_tail_is_capped_at_what_the_range_coder_charges() -> None:
    bits = laplace_rate_bits(torch.tensor([200.0]), torch.tensor([0.0]), torch.tensor([0.0067]))
    assert bits.item() == MAX_BITS_PER_SYMBOL == 24
    # The latent coder spends about that on a symbol its model finds this improbable: the
    # estimate neither undercounts it (as a 16-bit cap did) nor overcounts it.
    encoder = constriction.stream.queue.RangeEncoder()
    model = constriction.stream.model.QuantizedLaplace(LATENT_MIN, LATENT_MAX + 1)
    n = 200
    encoder.encode(np.full(n, 5, np.int32), model, np.zeros(n), np.full(n, 0.0067))
    assert MAX_BITS_PER_SYMBOL - 1 < encoder.num_bits() / n < MAX_BITS_PER_SYMBOL + 0.5
    # A narrow Laplace centred on the symbol costs (almost) nothing.
    bits = laplace_rate_bits(torch.tensor([3.0]), torch.tensor([3.0]), torch.tensor([0.0067]))
    assert bits.item() == pytest.approx(0.0, abs=1e-6)


def test_rate_is_continuous_across_the_branch_switch() -> None:
    d = torch.tensor([0.5 - 1e-6, 0.5, 0.5 + 1e-6])
    bits = laplace_rate_bits(d, torch.zeros(3), torch.full((3,), 0.7))
    assert (bits.max() - bits.min()).item() < 1e-4


def test_mean_rate_of_laplace_samples_is_the_entropy() -> None:
    mu, b = 0.3, 2.5
    support = torch.arange(-80, 81, dtype=torch.float64)
    pmf = torch.exp2(-_reference_bits(support, torch.tensor(mu), torch.tensor(b)))
    assert pmf.sum().item() == pytest.approx(1.0, abs=1e-9)
    entropy = -(pmf * torch.log2(pmf)).sum().item()
    # Sample the discretised Laplace by inverse CDF of a continuous Laplace, then rounding.
    gen = torch.Generator().manual_seed(1)
    u = torch.rand(40000, dtype=torch.float64, generator=gen) - 0.5
    samples = torch.round(mu - b * torch.sign(u) * torch.log1p(-2 * u.abs()))
    bits = laplace_rate_bits(samples.float(), torch.tensor(mu), torch.tensor(b))
    assert bits.mean().item() == pytest.approx(entropy, abs=0.03)
    # Where the 2^-16 floor does not bite, 2^-bits is the probability mass itself.
    near = support[support.abs() <= 20]
    mass = torch.exp2(-laplace_rate_bits(near.float(), torch.tensor(mu), torch.tensor(b)))
    assert torch.all(mass > 2.0**-16)
    expected = pmf[support.abs() <= 20].sum().item()
    assert mass.double().sum().item() == pytest.approx(expected, abs=1e-5)
    assert expected == pytest.approx(1.0, abs=1e-3)


def test_arm_initialisation_and_shapes() -> None:
    torch.manual_seed(0)
    arm = Arm(24, (24, 24))
    assert arm.is_residual == (True, True)
    for layer in arm.hidden:
        assert torch.count_nonzero(layer.weight) == 0
        assert torch.count_nonzero(layer.bias) == 0
    assert torch.count_nonzero(arm.output.bias) == 0
    assert arm.output.weight.std().item() == pytest.approx(0.25, rel=0.4)
    contexts = torch.randn(10, 24)
    mu, scale = arm(contexts)
    assert mu.shape == scale.shape == (10,)
    # Residual hidden layers start as the identity followed by ReLU.
    expected = arm.output(torch.relu(contexts))
    torch.testing.assert_close(arm.raw(contexts), expected)
    assert torch.all(scale >= math.exp(LOG_SCALE_MIN) - 1e-7)


def test_arm_plain_layers_when_widths_differ() -> None:
    torch.manual_seed(0)
    arm = Arm(12, (16, 16, 8))
    assert arm.is_residual == (False, True, False)
    assert arm.hidden[0].weight.abs().max().item() < 6.0 / 16**2
    assert torch.count_nonzero(arm.hidden[1].weight) == 0
    assert arm.raw(torch.randn(5, 12)).shape == (5, 2)
    assert Arm(4, ()).raw(torch.randn(3, 4)).shape == (3, 2)


def test_arm_state_dict_has_only_weights() -> None:
    arm = Arm(24, (24, 24))
    assert set(arm.state_dict()) == {
        "hidden.0.weight", "hidden.0.bias", "hidden.1.weight", "hidden.1.bias",
        "output.weight", "output.bias",
    }  # fmt: skip


@pytest.mark.parametrize("n_coarser", [0, 2])
def test_the_stabiliser_adds_a_linear_map_of_the_context(n_coarser: int) -> None:
    """Training computes it as a convolution per grid; it must equal the table form."""
    torch.manual_seed(n_coarser)
    shapes = [(9, 13), (5, 7), (3, 4), (2, 2), (1, 1)]
    gather = ContextGather(shapes, 2, n_coarser)
    arm = Arm(12 + n_coarser, (8,), stabiliser=True)
    assert arm.stabiliser is not None and arm.stabiliser.bias is None
    assert not arm.stabiliser.weight.any()  # starts at zero: the same ARM as without it
    with torch.no_grad():
        arm.stabiliser.weight.normal_()
    flat = torch.randn(sum(h * w for h, w in shapes), requires_grad=True)
    rate = arm.rate_of(flat, gather)
    contexts = gather(flat)
    mu, scale = arm(contexts)
    reference = laplace_rate_bits(flat, mu, scale)
    torch.testing.assert_close(rate, reference, rtol=1e-4, atol=1e-4)
    linear = contexts @ arm.stabiliser.weight.t()
    plain = arm.raw(contexts) - linear
    no_stabiliser = Arm(12 + n_coarser, (8,))
    no_stabiliser.load_state_dict(
        {k: v for k, v in arm.state_dict().items() if not k.startswith("stabiliser")}
    )
    torch.testing.assert_close(plain, no_stabiliser.raw(contexts))
    rate.sum().backward()
    assert arm.stabiliser.weight.grad is not None and arm.stabiliser.weight.grad.abs().sum() > 0
