"""benchmarks/schedule_variants.py: variants parsed and applied, and a paired run end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from coolchic.cli import main as coolchic_main
from coolchic.train.recipes import RECIPES
from tests.conftest import BENCHMARKS, load_benchmark

SCRIPT = BENCHMARKS / "schedule_variants.py"


@pytest.fixture(scope="module")
def sv() -> ModuleType:
    return load_benchmark("schedule_variants.py")


def test_a_variant_is_parsed_into_typed_overrides(sv: ModuleType) -> None:
    name, overrides = sv.parse_variant("w8=warmup=8x25+2x100,main=4500,lr=0.007")
    assert name == "w8"
    assert overrides == {"warmup": ((8, 25), (2, 100)), "main": 4500, "lr": 0.007}


@pytest.mark.parametrize(
    "text",
    [
        "base=main=10",  # the unmodified recipe's name
        "w8",  # nothing to change
        "w8=depth=3",  # not a schedule key
        "w8=warmup=8x",  # a stage without iterations
        "w8=warmup=8x25x2",
        "w8=main=many",
        "w8=main=",
    ],
)
def test_bad_variants_are_refused(sv: ModuleType, text: str) -> None:
    with pytest.raises(ValueError, match="variant"):
        sv.parse_variant(text)


def test_a_variant_changes_only_what_it_names(sv: ModuleType) -> None:
    fast = RECIPES["fast"]
    _, overrides = sv.parse_variant("x=warmup=8x25+2x100,main=4500,final=200,lr=0.005")
    changed = sv.apply_variant(fast, overrides)
    main, integer = changed.phases
    assert changed.warmup.stages == ((8, 25), (2, 100)) and changed.warmup.lr == 0.005
    assert (main.iterations, main.lr_start, main.lr_end) == (4500, 0.005, fast.phases[0].lr_end)
    assert (integer.iterations, integer.lr_start) == (200, fast.phases[1].lr_start)
    assert changed.network_lr_scale == fast.network_lr_scale
    assert RECIPES["fast"] is fast and fast.phases[0].iterations != 4500
    assert sv.apply_variant(fast, {"network_lr_scale": 3.0}).network_lr_scale == 3.0


def test_a_variant_the_recipe_rules_refuse_is_an_error(sv: ModuleType) -> None:
    with pytest.raises(ValueError, match="warm-up stages cannot add candidates"):
        sv.apply_variant(RECIPES["fast"], {"warmup": ((2, 10), (4, 10))})
    with pytest.raises(SystemExit):
        sv.parse_args(["--inputs", str(SCRIPT), "--variant", "a=main=0"])
    with pytest.raises(SystemExit):
        sv.parse_args(["--inputs", str(SCRIPT), "--variant", "a=main=5", "--variant", "a=main=6"])


def test_paired_run_end_to_end(sv: ModuleType, make_yuv, tmp_path: Path) -> None:
    source = make_yuv("tiny_16x8_01p_yuv420_8b.yuv")
    out = tmp_path / "out"
    command = [
        sys.executable,
        str(SCRIPT),
        *("--inputs", str(source), "--recipe", "instant", "--lmbdas", "1e-2"),
        *("--seeds", "0,1", "--variant", "short=main=20", "--jobs", "2", "--out", str(out)),
    ]
    first = subprocess.run(command, capture_output=True, text=True)
    assert first.returncode == 0, first.stdout + first.stderr

    summary = json.loads((out / "summary.json").read_text())
    short = summary["variants"]["short"]
    assert short["overrides"] == {"main": 20}
    assert short["all"]["points"] == 2 and len(short["all"]["changes_percent"]) == 2
    assert short["inputs"][source.name]["points"] == 2

    work = out / "work"
    for seed in (0, 1):
        base = json.loads((work / "base" / source.stem / f"lmbda1e-2_seed{seed}.json").read_text())
        mine = json.loads((work / "short" / source.stem / f"lmbda1e-2_seed{seed}.json").read_text())
        assert (
            base["iterations"] - mine["iterations"] == RECIPES["instant"].phases[0].iterations - 20
        )
        expected = 100 * (sv.cost(mine) / sv.cost(base) - 1)
        assert short["all"]["changes_percent"][seed] == pytest.approx(expected)

    # the base is `coolchic encode` itself: the same seed writes the same bytes
    plain = tmp_path / "plain.cool"
    args = ["-q", "--threads", "1", "encode", str(source), "-o", str(plain)]
    assert coolchic_main([*args, "--recipe", "instant", "--lmbda", "1e-2", "--seed", "1"]) == 0
    assert plain.read_bytes() == (work / "base" / source.stem / "lmbda1e-2_seed1.cool").read_bytes()

    # a second run finds every report and codes nothing again
    stamps = {path: path.stat().st_mtime_ns for path in work.rglob("*.json")}
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode == 0, again.stdout + again.stderr
    assert {path: path.stat().st_mtime_ns for path in work.rglob("*.json")} == stamps
