"""How long an encode will take, known before its training starts.

The step time is measured, not modelled: :func:`calibrate` runs a few training steps of the
encode's own decoder on a frame of its size, in a throwaway model with its own random
generators, so the encode that follows is untouched (seeded encodes stay byte-identical). What
a step costs depends on the frame size, the decoder, the threads and what else the machine is
doing, not on the picture's content, so a synthetic frame serves ``coolchic recipes --size``.

:func:`forecast` turns the three measured costs (a step of all modules with soft rounding, a
step of the networks alone on true integers, an evaluation) into the recipe's time: every
iteration, every evaluation, and the post-training steps (the networks' quantisation, counted
in evaluations, see :data:`POST_TRAINING_EVALUATIONS`). ``encode`` logs it before training and
writes it beside the actual time in the report (``expected_seconds``, ``encode_seconds``).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from coolchic.allocator import keep_freed_memory
from coolchic.io.frame import Frame, FrameFormat, plane_shapes
from coolchic.model.config import ModelConfig
from coolchic.model.coolchic import CoolChicModel
from coolchic.nnquant.search import takes_rdoq
from coolchic.train.loss import Target
from coolchic.train.recipes import NETWORKS, Phase, Recipe
from coolchic.train.trainer import (
    evaluate,
    make_optimizer,
    phase_quantizer,
    select_trained,
    training_step,
)

#: Untimed calls before timing each kind of step: the first compiles and allocates, and the
#: next ones may still run slower than the steady state.
WARMUP_CALLS = 3
#: Calibration times each kind of step until it has this many and has spent this long on it.
MIN_TIMED_STEPS = 5
MIN_TIMED_S = 0.2
#: The networks' quantisation and the checks after training, counted in evaluations of the
#: whole model (the step-size trials are partial passes): measured 80 to 93 at 1152x768, where
#: RDOQ does not run, and 300 to 510 at 416x240 and 192x128, where it does (RDOQ_MAX_PIXELS;
#: its count depends on how many integer moves pay). BENCHMARKS.md, "time known up front".
POST_TRAINING_EVALUATIONS = {False: 85.0, True: 400.0}


@dataclass(frozen=True)
class StepTimes:
    """Seconds of one training step and of one evaluation, measured on this machine."""

    train_s: float
    networks_s: float
    evaluate_s: float
    calibration_s: float

    def as_dict(self) -> dict[str, float]:
        return {
            "train_step_ms": round(1000 * self.train_s, 2),
            "networks_step_ms": round(1000 * self.networks_s, 2),
            "evaluate_ms": round(1000 * self.evaluate_s, 2),
            "calibration_seconds": round(self.calibration_s, 3),
        }


@dataclass(frozen=True)
class Forecast:
    """The expected wall time of an encode, and its parts."""

    training_s: float
    post_training_s: float
    steps: StepTimes

    @property
    def seconds(self) -> float:
        """The whole encode's time, the calibration (already spent) included."""
        return self.steps.calibration_s + self.training_s + self.post_training_s

    def describe(self) -> str:
        return (
            f"expected time about {format_duration(self.seconds)} "
            f"(a step takes {1000 * self.steps.train_s:.0f} ms here)"
        )


def synthetic_target(
    width: int,
    height: int,
    fmt: FrameFormat = "yuv420",
    bit_depth: int = 8,
    device: str = "cpu",
) -> Target:
    """A noise frame of the given size: what a step costs does not depend on the picture."""
    rng = np.random.default_rng(0)
    peak = (1 << bit_depth) - 1
    dtype = np.uint8 if bit_depth <= 8 else np.uint16
    planes = tuple(
        rng.integers(0, peak + 1, size=shape).astype(dtype)
        for shape in plane_shapes(fmt, width, height)
    )
    frame = Frame.from_integer_planes(planes, fmt=fmt, bit_depth=bit_depth)  # type: ignore[arg-type]
    return Target.from_frame(frame, device)


def calibrate(target: Target, config: ModelConfig, lmbda: float, device: str = "cpu") -> StepTimes:
    """Time the encode's steps on ``target`` (already on ``device``) with a throwaway model.

    The first steps of each kind are not timed: they compile and allocate what the encode
    reuses.
    """
    started = time.perf_counter()
    keep_freed_memory()  # as the trainer does: without it every step maps fresh pages
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = CoolChicModel(config, target.height, target.width).to(device)
        generator = torch.Generator(device=target.full.device).manual_seed(0)
        soft = Phase(name="calibration", iterations=1, lr_start=1e-3, lr_end=1e-3)
        hard = Phase(
            name="calibration",
            iterations=1,
            lr_start=1e-6,
            lr_end=1e-6,
            quantizer="hardround",
            modules=NETWORKS,
        )
        train_s = _time_steps(model, target, lmbda, soft, generator, device)
        networks_s = _time_steps(model, target, lmbda, hard, generator, device)
        select_trained(model, soft.modules)
        evaluate_s = _median_seconds(lambda: evaluate(model, target, lmbda), device)
    return StepTimes(
        train_s=train_s,
        networks_s=networks_s,
        evaluate_s=evaluate_s,
        calibration_s=time.perf_counter() - started,
    )


def _time_steps(
    model: CoolChicModel,
    target: Target,
    lmbda: float,
    phase: Phase,
    generator: torch.Generator,
    device: str,
) -> float:
    """Median seconds of one training step of ``phase``'s kind."""
    networks, parameters = select_trained(model, phase.modules)
    optimizer = make_optimizer(networks, parameters, phase.lr_start)
    quantizer = phase_quantizer(phase, 0.5)
    return _median_seconds(
        lambda: training_step(
            model,
            optimizer,
            networks,
            target=target,
            lmbda=lmbda,
            quantizer=quantizer,
            generator=generator,
        ),
        device,
    )


def _median_seconds(run: Callable[[], object], device: str) -> float:
    """Median wall time of ``run()`` once it runs at its steady pace."""
    for _ in range(WARMUP_CALLS):
        run()
    _synchronize(device)
    samples: list[float] = []
    while len(samples) < MIN_TIMED_STEPS or sum(samples) < MIN_TIMED_S:
        start = time.perf_counter()
        run()
        _synchronize(device)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def forecast(
    recipe: Recipe, steps: StepTimes, *, pixels: int, iterations_done: int = 0
) -> Forecast:
    """The wall time of ``recipe`` from the measured ``steps``, less the iterations done.

    Patience may end a phase early, so recipes with patience can finish sooner than this.
    """
    skip = iterations_done
    training = 0.0
    for candidates, iterations in recipe.warmup.stages:
        runs = candidates * iterations
        left = max(0, runs - skip)
        skip = max(0, skip - runs)
        training += left * steps.train_s + candidates * steps.evaluate_s * (left > 0)
    for phase in recipe.phases:
        left = max(0, phase.iterations - skip)
        skip = max(0, skip - phase.iterations)
        per_step = steps.train_s if "latents" in phase.modules else steps.networks_s
        evaluations = math.ceil(left / phase.eval_every)
        training += left * per_step + evaluations * steps.evaluate_s
    post = POST_TRAINING_EVALUATIONS[takes_rdoq(recipe, pixels)] * steps.evaluate_s
    return Forecast(training_s=training, post_training_s=post, steps=steps)


def format_duration(seconds: float) -> str:
    """``42 s``, ``4 min 05 s``, ``1 h 03 min``: as precise as an estimate deserves."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
