"""The expected encode time: measured steps, the recipe's arithmetic, the CLI table, the report."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from coolchic.cli import main
from coolchic.codec import EncoderConfig, default_model_config, encode
from coolchic.forecast import (
    POST_TRAINING_EVALUATIONS,
    StepTimes,
    calibrate,
    forecast,
    format_duration,
    synthetic_target,
)
from coolchic.io.frame import Frame
from coolchic.train.recipes import RECIPES, get_recipe
from tests.conftest import yuv420_planes

STEPS = StepTimes(train_s=0.010, networks_s=0.004, evaluate_s=0.002, calibration_s=0.5)


def test_forecast_counts_every_iteration_evaluation_and_the_post_training() -> None:
    recipe = get_recipe("fast")
    expected = forecast(recipe, STEPS, pixels=10_000_000)  # above the RDOQ limit
    main_phase, integer_phase = recipe.phases
    warmup_evaluations = sum(candidates for candidates, _ in recipe.warmup.stages)
    training = (
        (recipe.warmup.iterations + main_phase.iterations) * STEPS.train_s
        + integer_phase.iterations * STEPS.networks_s
        + (
            warmup_evaluations
            + -(-main_phase.iterations // main_phase.eval_every)
            + -(-integer_phase.iterations // integer_phase.eval_every)
        )
        * STEPS.evaluate_s
    )
    assert expected.training_s == pytest.approx(training)
    assert expected.post_training_s == pytest.approx(
        POST_TRAINING_EVALUATIONS[False] * STEPS.evaluate_s
    )
    total = STEPS.calibration_s + training + expected.post_training_s
    assert expected.seconds == pytest.approx(total)
    # Small frames also pay for the integer moves (RDOQ) after training.
    assert forecast(recipe, STEPS, pixels=100).post_training_s > expected.post_training_s
    # ... except with instant, which skips it.
    instant = forecast(get_recipe("instant"), STEPS, pixels=100)
    assert instant.post_training_s == pytest.approx(expected.post_training_s)


def test_forecast_grows_with_the_recipe_and_shrinks_with_the_iterations_done() -> None:
    by_iterations = sorted(RECIPES.values(), key=lambda recipe: recipe.iterations)
    times = [forecast(recipe, STEPS, pixels=100).seconds for recipe in by_iterations]
    assert times == sorted(times)
    recipe = get_recipe("fast")
    remaining = [
        forecast(recipe, STEPS, pixels=100, iterations_done=done).training_s
        for done in (0, 100, 1000, 4000, recipe.iterations)
    ]
    assert remaining == sorted(remaining, reverse=True)
    assert remaining[-1] == 0.0
    # Past the warm-up, each iteration done saves exactly one main-phase step.
    warmup = recipe.warmup.iterations
    saved = remaining_at(recipe, warmup + 10) - remaining_at(recipe, warmup + 20)
    assert saved == pytest.approx(10 * STEPS.train_s)


def remaining_at(recipe: object, done: int) -> float:
    return forecast(recipe, STEPS, pixels=100, iterations_done=done).training_s  # type: ignore[arg-type]


def test_calibration_measures_the_steps_and_leaves_the_random_state_alone() -> None:
    target = synthetic_target(32, 16)
    config = default_model_config(pixels=32 * 16)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    steps = calibrate(target, config, 1e-3)
    assert torch.equal(torch.get_rng_state(), before)
    assert 0 < steps.train_s < 5 and 0 < steps.networks_s < 5 and 0 < steps.evaluate_s < 5
    assert steps.calibration_s >= steps.train_s + steps.networks_s + steps.evaluate_s


def test_a_calibrated_encode_writes_the_same_bytes_and_reports_both_times() -> None:
    planes = yuv420_planes(32, 16, 8, seed=3)
    frame = Frame.from_integer_planes(planes, fmt="yuv420", bit_depth=8)
    config = EncoderConfig(recipe="instant", seed=0)
    first = encode(frame, config)
    # Another calibration in between (other size, other RNG use) changes nothing.
    calibrate(synthetic_target(16, 16), default_model_config(pixels=16 * 16), 1e-3)
    second = encode(frame, config)
    assert first.bitstream == second.bitstream
    report = first.report
    assert report["expected_seconds"] > 0 and report["encode_seconds"] > 0
    assert report["forecast"]["train_step_ms"] > 0
    assert report["expected_seconds"] >= report["forecast"]["calibration_seconds"]


def test_format_duration() -> None:
    assert format_duration(4.4) == "4 s"
    assert format_duration(245) == "4 min 05 s"
    assert format_duration(3780) == "1 h 03 min"


def test_recipes_size_table_fits_80_columns_and_json_has_every_recipe(
    capsys: pytest.CaptureFixture,
) -> None:
    env = {**os.environ, "COLUMNS": "80", "COOLCHIC_COMPILE": "0"}
    result = subprocess.run(
        [sys.executable, "-m", "coolchic", "--threads", "1", "recipes", "--size", "48x32"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    for name in RECIPES:
        assert any(line.split() and line.split()[0] == name for line in lines), name
    assert "timing training steps" in result.stderr

    assert main(["--threads", "1", "recipes", "--size", "48x32", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert (payload["width"], payload["height"]) == (48, 32)
    rows = payload["recipes"]
    assert list(rows) == list(RECIPES)
    by_iterations = sorted(rows.values(), key=lambda row: row["iterations"])
    seconds = [row["expected_seconds"] for row in by_iterations]
    assert seconds == sorted(seconds) and seconds[0] > 0
    assert all(row["peak_memory_bytes"] > 0 for row in rows.values())


@pytest.mark.parametrize("size", ["48x", "47x32", "0x32", "99999x32"])
def test_recipes_rejects_a_bad_size(size: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["recipes", "--size", size]) == 2
    assert "--size" in capsys.readouterr().err


def test_encode_logs_the_expected_time_before_training(tmp_path: Path) -> None:
    path = tmp_path / "clip_32x16_01p_yuv420_8b.yuv"
    path.write_bytes(b"".join(p.tobytes() for p in yuv420_planes(32, 16, 8, seed=1)))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "coolchic",
            "--threads",
            "1",
            "encode",
            str(path),
            "-o",
            str(tmp_path / "out.cool"),
            "--recipe",
            "instant",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    announced = [i for i, line in enumerate(lines) if "expected time about" in line]
    trained = [i for i, line in enumerate(lines) if "train/main" in line]
    assert announced and (not trained or announced[0] < trained[0])


def test_step_times_round_trip_as_report_fields() -> None:
    fields = STEPS.as_dict()
    assert fields["train_step_ms"] == 10.0 and fields["calibration_seconds"] == 0.5
    assert dataclasses.asdict(STEPS)["evaluate_s"] == 0.002
