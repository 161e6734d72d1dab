"""The recipe ladder: a slower recipe never trains less, and ``coolchic recipes`` shows it."""

from __future__ import annotations

import json
from itertools import pairwise

import pytest

from coolchic.cli import main
from coolchic.train.recipes import RECIPE_NAMES, RECIPES

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
