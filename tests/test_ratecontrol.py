"""The λ search of rate control, driven by fake encoders (no training)."""

from __future__ import annotations

import itertools
import math

import pytest

from coolchic.ratecontrol import (
    FREEZE_AT,
    MAX_UPDATE_DECADES,
    MIN_STREAM_BITS,
    REMAINING_PSNR_DB,
    SEARCH_LMBDA_RANGE,
    OnlineController,
    RateTarget,
    TargetUnreachable,
    Trial,
    parse_targets,
    search_lmbda,
)


class FakeEncoder:
    """A monotone RD curve unlike the search's prior: PSNR falls 4.5 dB per decade of λ (the
    prior says 6), the rate 0.8 decades per decade (prior 0.6), both around another λ."""

    def __init__(self, *, psnr_ceiling: float = 90.0, wobble: float = 0.0) -> None:
        self.psnr_ceiling = psnr_ceiling
        self.wobble = wobble
        self.lmbdas: list[float] = []

    def __call__(self, lmbda: float) -> Trial:
        self.lmbdas.append(lmbda)
        decades = math.log10(lmbda / 3e-3)
        # A deterministic wobble, as if each trial landed a little off the smooth curve.
        noise = self.wobble * math.sin(7.0 * len(self.lmbdas))
        psnr = min(self.psnr_ceiling, 31.0 - 4.5 * decades + noise)
        bpp = 0.2 * 10 ** (-0.8 * decades + noise / 10)
        return Trial(lmbda=lmbda, psnr_db=psnr, bpp=bpp, seconds=1.0)


@pytest.mark.parametrize(
    ("metric", "values"),
    [("psnr", (28.0, 33.0, 38.5, 41.5)), ("bpp", (0.03, 0.2, 0.75, 2.0))],
)
def test_search_meets_targets_across_the_range_in_a_few_trials(metric, values) -> None:
    for value in values:
        target = RateTarget(metric, value)
        encoder = FakeEncoder()
        result = search_lmbda(target, encoder)
        kept = result.trials[result.kept]
        assert result.met
        assert abs(target.error(kept.psnr_db, kept.bpp)) <= target.tolerance
        assert len(result.trials) <= 5, (value, encoder.lmbdas)


def test_search_with_a_wobbly_encoder_still_converges_inside_the_bracket() -> None:
    target = RateTarget("psnr", 35.0)
    encoder = FakeEncoder(wobble=0.06)
    result = search_lmbda(target, encoder)
    assert result.met
    assert len(result.trials) <= 6
    # Once bracketed, every new λ lies strictly between the two nearest trials either side.
    errors = [(t.lmbda, target.error(t.psnr_db, t.bpp)) for t in result.trials]
    for index in range(2, len(errors)):
        earlier = errors[:index]
        above = [lmbda for lmbda, error in earlier if error > 0]
        below = [lmbda for lmbda, error in earlier if error < 0]
        if above and below and max(above) < min(below):
            assert max(above) < errors[index][0] < min(below)


def test_first_lmbda_follows_the_target_and_stays_in_range() -> None:
    low, high = SEARCH_LMBDA_RANGE
    psnr = [RateTarget("psnr", value).first_lmbda() for value in (30, 35, 40)]
    bpp = [RateTarget("bpp", value).first_lmbda() for value in (0.1, 0.5, 2.0)]
    assert psnr[0] > psnr[1] > psnr[2]
    assert bpp[0] > bpp[1] > bpp[2]
    assert RateTarget("psnr", 80).first_lmbda() == low
    assert RateTarget("psnr", 5).first_lmbda() == high


def test_an_unreachable_psnr_ends_at_the_end_of_the_range() -> None:
    encoder = FakeEncoder(psnr_ceiling=40.0)
    with pytest.raises(
        TargetUnreachable, match=r"80 dB is out of reach: at λ = 1e-05, .* gives 40\.00 dB"
    ):
        search_lmbda(RateTarget("psnr", 80.0), encoder)
    assert min(encoder.lmbdas) == SEARCH_LMBDA_RANGE[0]
    assert len(encoder.lmbdas) <= 2


def test_a_rate_below_one_header_is_refused_before_any_trial() -> None:
    target = RateTarget("bpp", 0.0001)
    with pytest.raises(TargetUnreachable, match="header"):
        target.check_reachable(192 * 128)
    RateTarget("bpp", 2 * MIN_STREAM_BITS / (192 * 128)).check_reachable(192 * 128)


def test_a_spent_budget_keeps_the_closest_trial_and_says_it_missed() -> None:
    target = RateTarget("psnr", 40.0)
    encoder = FakeEncoder()
    result = search_lmbda(target, encoder, may_continue=lambda trials, _lmbda: len(trials) < 2)
    assert len(result.trials) == 2
    assert not result.met
    errors = [abs(target.error(t.psnr_db, t.bpp)) for t in result.trials]
    assert result.kept == errors.index(min(errors))


def test_parse_targets_and_their_tags() -> None:
    targets = parse_targets("psnr", "34, 36.5")
    assert [t.value for t in targets] == [34.0, 36.5]
    assert [t.tag for t in targets] == ["p34", "p36.5"]
    assert parse_targets("bpp", "0.25")[0].tag == "b0.25"
    for bad in ("34,34", "abc", "0", "-1", "nan"):
        with pytest.raises(ValueError):
            parse_targets("psnr", bad)


def test_online_controller_steers_lambda_to_the_target_then_holds_it() -> None:
    """A plant that answers at once, with the usual remaining gain still to come: by the time
    λ freezes, the projected final value sits on the target."""
    target = RateTarget("psnr", 36.0)
    controller = OnlineController(target)

    def plant_psnr(lmbda: float, fraction: float) -> float:
        final = 31.0 - 4.5 * math.log10(lmbda / 3e-3)
        return final - REMAINING_PSNR_DB * (1 - fraction) ** 2

    lmbda = target.first_lmbda()
    trajectory = []
    for step in range(40):
        fraction = step / 39
        lmbda = controller.update(fraction, plant_psnr(lmbda, fraction), 0.3, lmbda)
        trajectory.append(lmbda)
    final_psnr = plant_psnr(lmbda, 1.0)
    assert abs(final_psnr - 36.0) < 0.1
    frozen = [lmbda for step, lmbda in enumerate(trajectory) if step / 39 > FREEZE_AT]
    assert len(set(frozen)) == 1  # no move after the freeze
    moves = [abs(math.log10(b / a)) for a, b in itertools.pairwise(trajectory)]
    assert max(moves) <= MAX_UPDATE_DECADES + 1e-12


def test_online_controller_counts_the_overhead_of_a_rate_target() -> None:
    """With the networks' and header's bits counted, the latents get less of a rate target."""
    target = RateTarget("bpp", 0.3)
    bare = OnlineController(target)
    loaded = OnlineController(target, overhead_bpp=lambda _lmbda: 0.1)
    assert loaded.projected_error(0.5, 35.0, 0.25, 1e-3) > bare.projected_error(
        0.5, 35.0, 0.25, 1e-3
    )
    assert loaded.update(0.5, 35.0, 0.25, 1e-3) > bare.update(0.5, 35.0, 0.25, 1e-3)


def test_online_controller_gives_up_on_a_target_beyond_the_range() -> None:
    """80 dB: λ sinks to the end of the range and the projection stays far short, so the
    first trial stops there instead of training on."""
    controller = OnlineController(RateTarget("psnr", 80.0))
    lmbda = RateTarget("psnr", 80.0).first_lmbda()
    assert lmbda == SEARCH_LMBDA_RANGE[0]
    assert controller.update(0.1, 47.0, 2.0, lmbda) == lmbda  # too early to say
    with pytest.raises(TargetUnreachable, match=r"80 dB is out of reach.*heading for about 47"):
        controller.update(0.4, 47.0, 2.0, lmbda)
    # Close to the target at the end of the range is not a reason to give up.
    near = OnlineController(RateTarget("psnr", 47.5))
    assert near.update(0.4, 47.0, 2.0, lmbda) == lmbda


def test_noise_that_breaks_monotony_never_sends_the_search_back_to_a_tried_lmbda() -> None:
    """Later trials land 1.8 dB above the curve the first one sat on (as a tiny, barely
    trained encode can): the search must keep trying new λ, not call the target unreachable."""
    smooth = FakeEncoder()

    def jumpy(lmbda: float) -> Trial:
        trial = smooth(lmbda)
        bonus = 1.8 if len(smooth.lmbdas) > 1 else 0.0
        return Trial(lmbda, trial.psnr_db + bonus, trial.bpp, 1.0)

    target = RateTarget("psnr", 30.0)
    result = search_lmbda(target, jumpy, first_lmbda=3e-3 * 10 ** (-0.1))
    lmbdas = [trial.lmbda for trial in result.trials]
    assert len(set(lmbdas)) == len(lmbdas)
    assert result.met
