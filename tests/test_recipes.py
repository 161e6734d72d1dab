"""The recipe ladder: a slower recipe never trains less, and ``coolchic recipes`` shows it."""

from __future__ import annotations

import json
import math
from itertools import pairwise

import pytest

from coolchic.cli import main
from coolchic.defaults import RECIPE_NAMES
from coolchic.train.recipes import RECIPES, continuation, get_recipe, scaled

#: Fastest first.
LADDER = ("instant", "faster", "fast", "medium", "slow", "placebo")


def test_the_ladder_is_every_recipe_fastest_first() -> None:
    assert LADDER == RECIPE_NAMES == tuple(RECIPES)


def test_a_slower_recipe_trains_more() -> None:
    for faster, slower in pairwise(RECIPES[name] for name in LADDER):
        pair = f"{faster.name} < {slower.name}"
        assert faster.iterations < slower.iterations, pair
        assert faster.warmup.iterations < slower.warmup.iterations, pair
        for fast_phase, slow_phase in zip(faster.phases, slower.phases, strict=True):
            assert fast_phase.name == slow_phase.name
            assert fast_phase.iterations < slow_phase.iterations, f"{pair}, {fast_phase.name}"


def test_coolchic_recipes_shows_each_recipes_iterations(capsys: pytest.CaptureFixture) -> None:
    assert main(["recipes", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert {name: shown[name]["iterations"] for name in LADDER} == {
        name: RECIPES[name].iterations for name in LADDER
    }
    assert main(["recipes"]) == 0
    table = capsys.readouterr().out
    for name in LADDER:
        assert str(RECIPES[name].iterations) in table


@pytest.mark.parametrize("lmbda", [0.0, -1e-3, float("inf"), float("nan")])
def test_every_entry_refuses_the_same_bad_lmbda(lmbda: float) -> None:
    """One rule for λ, whether it comes from the API, the batch settings or the trainer."""
    from coolchic.codec import EncoderConfig
    from coolchic.jobs.settings import EncodeSettings

    with pytest.raises(ValueError, match="lmbda must be a finite number > 0"):
        EncoderConfig(lmbda=lmbda)
    with pytest.raises(ValueError, match="lmbda must be a finite number > 0"):
        EncodeSettings(lmbda=lmbda)


def test_the_command_line_defaults_are_the_api_defaults() -> None:
    from coolchic.cli.commands.encode import encode
    from coolchic.codec import EncoderConfig
    from coolchic.jobs.settings import EncodeSettings

    options = {parameter.name: parameter.default for parameter in encode.params}
    api, settings = EncoderConfig(), EncodeSettings()
    assert options["recipe"] == api.recipe == settings.recipe == "fast"
    assert options["lmbda"] == api.lmbda == settings.lmbda == 1e-3


def test_continuation_replays_the_end_of_the_main_phase_from_where_it_stood() -> None:
    fast = get_recipe("fast")
    main, integer = fast.phases
    replay = continuation(fast, 0.3)
    retarget, *later = replay.phases
    assert replay.warmup.empty and replay.warmup.iterations == 0
    assert later == [integer]
    assert retarget.iterations == round(0.3 * main.iterations)
    # Where the main phase's cosine and linear ramps stood with 30 % of it left.
    cosine = main.lr_end + (main.lr_start - main.lr_end) * (1 + math.cos(math.pi * 0.7)) / 2
    assert retarget.lr_start == pytest.approx(cosine)
    assert retarget.lr_end == main.lr_end
    assert retarget.temperature[0] == pytest.approx(
        main.temperature[0] + 0.7 * (main.temperature[1] - main.temperature[0])
    )
    assert retarget.noise_sigma[1] == main.noise_sigma[1]
    assert replay.iterations < 0.35 * fast.iterations
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError):
            continuation(fast, bad)


def test_a_scaled_recipe_stretches_every_phase_and_keeps_its_shape() -> None:
    slow = get_recipe("slow")
    longer = scaled(slow, 2.5)
    assert [count for count, _ in longer.warmup.stages] == [c for c, _ in slow.warmup.stages]
    for (_, before), (_, after) in zip(slow.warmup.stages, longer.warmup.stages, strict=True):
        assert after == round(2.5 * before)
    for before, after in zip(slow.phases, longer.phases, strict=True):
        assert after.iterations == round(2.5 * before.iterations)
        assert (after.lr_start, after.lr_end) == (before.lr_start, before.lr_end)
        assert after.temperature == before.temperature and after.modules == before.modules
    assert slow.phases[0].patience is not None
    assert longer.phases[0].patience == round(2.5 * slow.phases[0].patience)
    assert longer.name == slow.name and scaled(slow, 1.0) is slow
    # A short scale still leaves every phase at least one iteration.
    assert min(phase.iterations for phase in scaled(get_recipe("instant"), 0.01).phases) == 1
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="iterations scale"):
            scaled(slow, bad)


def test_every_entry_refuses_a_bad_iterations_scale() -> None:
    from coolchic.codec import EncoderConfig
    from coolchic.jobs.settings import EncodeSettings

    with pytest.raises(ValueError, match="iterations scale"):
        EncoderConfig(iterations_scale=0.0)
    with pytest.raises(ValueError, match="iterations scale"):
        EncodeSettings(iterations_scale=-2.0)
    assert EncoderConfig(recipe="fast", iterations_scale=2).schedule() == scaled(
        get_recipe("fast"), 2
    )
