"""The public API: ``encode(frame, config, progress) -> Encoded`` and ``decode(bytes) -> Frame``.

Encoding overfits a model to the frame (:mod:`coolchic.train`), quantises its networks by
rate-distortion cost, range-codes the latents through the decoder's own code path (with an
integer ARM, so entropy decoding is bit-exact on every platform), writes the self-describing
stream, then runs the real decoder on those bytes: the reconstruction and the PSNR that the
encoder reports are the decoder's.

Decoding is :mod:`coolchic.decoder` (torch-free), re-exported here: ``decode``,
``decode_stream``, ``Decoded`` and ``model_config_from_header``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from coolchic import __version__
from coolchic.allocator import release_freed_memory
from coolchic.bitstream.constants import FORMAT_VERSION
from coolchic.bitstream.header import header_for_model, pack_stream, unpack_stream
from coolchic.bitstream.latents import encode_latents
from coolchic.decode_memory import (
    MEMORY_LIMIT_VARIABLE,
    decode_memory_limit,
    estimate_decode_bytes,
    format_bytes,
)
from coolchic.decoder import Decoded as Decoded  # re-exported: the API's decoding half
from coolchic.decoder import decode as decode
from coolchic.decoder import decode_stream as decode_stream
from coolchic.decoder import model_config_from_header as model_config_from_header
from coolchic.defaults import DEFAULT_LMBDA, DEFAULT_RECIPE, check_lmbda
from coolchic.errors import EncodingError
from coolchic.forecast import Forecast, calibrate, forecast
from coolchic.io.frame import Frame
from coolchic.io.metrics import frame_metrics
from coolchic.io.naming import YuvName
from coolchic.model.complexity import parameter_counts
from coolchic.model.config import ModelConfig, parse_synthesis
from coolchic.model.coolchic import CoolChicModel
from coolchic.nnquant.params import QuantizedNetworks
from coolchic.nnquant.search import quantize_networks, rdoq_improbable_latents, takes_rdoq
from coolchic.ratecontrol import (
    BPP_TOLERANCE,
    CONTINUATION_RESPONSIVENESS,
    MIN_STREAM_BITS,
    PSNR_TOLERANCE_DB,
    OnlineController,
    RateTarget,
    Trial,
    search_lmbda,
)
from coolchic.report import stream_report
from coolchic.train.checkpoint import CHECKPOINT_FORMAT, Checkpoint, TrainingState
from coolchic.train.loss import Target
from coolchic.train.progress import (
    FORECAST_PHASE,
    ProgressCallback,
    ProgressEvent,
    ignore_progress,
)
from coolchic.train.recipes import Recipe, continuation, get_recipe, scaled
from coolchic.train.trainer import LambdaUpdate, Trainer, TrainingDiverged

logger = logging.getLogger(__name__)

#: Different seeds tried when training diverges beyond recovery.
MAX_SEED_ATTEMPTS = 3


@dataclass(frozen=True)
class EncoderConfig:
    """Everything that decides an encode besides the frame.

    ``model=None`` lets the encoder pick the architecture for the image (see
    :func:`default_model_config`).
    """

    lmbda: float = DEFAULT_LMBDA
    recipe: str = DEFAULT_RECIPE
    model: ModelConfig | None = None
    start_lr: float | None = None
    seed: int = 0
    #: Every phase of the recipe this many times as long (see :func:`scaled`).
    iterations_scale: float = 1.0
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_lmbda(self.lmbda)
        self.schedule()
        if self.start_lr is not None and not (math.isfinite(self.start_lr) and self.start_lr > 0):
            raise ValueError(f"start_lr must be a finite number > 0, found {self.start_lr}")

    def schedule(self) -> Recipe:
        """The recipe, stretched by ``iterations_scale``."""
        return scaled(get_recipe(self.recipe), self.iterations_scale)


@dataclass(frozen=True, eq=False)
class Encoded:
    """An encoded frame: the file's bytes, the decoder's reconstruction, the report."""

    bitstream: bytes
    decoded: Frame
    report: dict[str, Any] = field(default_factory=dict)


#: The small decoder: 12 causal contexts, one hidden ARM layer of 8, a 1x1 synthesis 7→8→3.
SMALL_DECODER = ModelConfig(
    n_ctx_rowcol=2,
    arm_hidden=(8,),
    synthesis=parse_synthesis("8-1-linear-relu,3-1-linear-none"),
)

#: The quick recipes: their budget is time, and at 1920x1080 the small decoder's step (0.32 s,
#: against 0.83 s for the v2-sized one, BENCHMARKS.md 2026-12-03 12:24) lets ``fast`` finish
#: within half an hour on two cores. They leave out the inter-feature context, but for
#: ``fast`` on frames of :data:`FAST_INTER_FEATURE_MIN_PIXELS` and more.
QUICK_RECIPES = frozenset({"instant", "faster", "fast"})

#: What the small decoder adds with the longer recipes (``medium`` and up), and with ``fast``
#: on frames of :data:`FAST_INTER_FEATURE_MIN_PIXELS` and more: Cool-chic 5's inter-feature
#: context (2 values) over 3 hyper-latent grids. At ``medium``, in one run each, it lowered
#: BD-rate against x265 by 5.7 points on kodim15 192x128 and 3.0 on biville-crop 416x240, for
#: 1.2-1.4x the encode time; at equal time on tmshre 416x240 it beat the official ``mop`` by
#: 16.0 % where plain ``medium`` did by 10.9 % (BENCHMARKS.md, 2026-12-04 16:03, 16:43 and
#: 18:04).
SMALL_DECODER_CONTEXT_FOR_LONG_RECIPES = {"ifce_features": 2, "hyper_grids": 3}

#: From this many pixels on, ``fast`` takes the inter-feature context too. With it, ``fast``
#: went from +3.9 % to −2.9 % BD-rate against x265 at 1152x768 and from +0.8 % to −3.4 % on
#: biville-crop 416x240 (99,840 pixels), for 1.2-1.3x the encode time, which still fits
#: issue 9's limits there (BENCHMARKS.md, 2026-12-04 22:40). On 192x128 photos it was worth
#: about as much as the plain decoder given its 1.25x time (2026-12-04 07:20 and 13:50), and
#: ``fast`` keeps its time at that size.
FAST_INTER_FEATURE_MIN_PIXELS = 90_000

#: Below this many pixels ``fast`` takes the inter-feature context only at λ under
#: :data:`FAST_INTER_FEATURE_MAX_LMBDA`. At low rates on a small frame its maps and hyper grids
#: cost more bits than they save in ``fast``'s iterations: at λ = 1e-2 on four 416x240 photos
#: the plain decoder had a lower rate-distortion cost on three (by 1.5 to 7.2 %, 2.6 % on
#: average) in 0.84x the time, while on a 768x512 crop (393,216 pixels) the context still
#: paid 1.1 % there (BENCHMARKS.md, 2026-12-05 01:30). The bound sits between the two sizes.
FAST_INTER_FEATURE_ANY_RATE_MIN_PIXELS = 200_000

#: See :data:`FAST_INTER_FEATURE_ANY_RATE_MIN_PIXELS`: between λ = 4e-3, where the context
#: paid on small frames, and 1e-2, where it did not.
FAST_INTER_FEATURE_MAX_LMBDA = 6e-3

#: Below this λ (high rates) the small decoder's ARM sees 24 contexts instead of 12.
WIDE_CONTEXT_LMBDA = 6e-4

#: ``fast``'s synthesis on frames in :data:`FAST_WIDE_SYNTHESIS_PIXELS`: 16 hidden features
#: instead of 8 (90 more parameters, 80 more MAC/pixel, the same step time within 5 %).
WIDE_SYNTHESIS = parse_synthesis("16-1-linear-relu,3-1-linear-none")

#: The frame sizes where ``fast`` takes :data:`WIDE_SYNTHESIS`. On four pictures of 240,000
#: to 370,000 pixels that no tuning had used it lowered the rate-distortion cost in 17 pairs
#: of 20, by 2.2 % on average, for 1.04x the encode time (BENCHMARKS.md, 2026-12-06 15:40 and
#: 18:00). At 100,000 pixels and on 192x128 photos it did nothing (its parameters weigh more
#: there); at 1152x768 it lowered J by 0.1 and 0.9 %, too little to risk the 15- and
#: 30-minute limits of 1152x768 and 1920x1080 encodes, which 1.04x would break on a slow CPU.
FAST_WIDE_SYNTHESIS_PIXELS = range(200_000, 600_000)

#: ``fast``'s ARM at high rates (λ below :data:`WIDE_CONTEXT_LMBDA`) on the frames in
#: :data:`FAST_WIDE_HIGH_RATE_PIXELS`: one hidden layer of 16 instead of 8 (232 more
#: parameters, 300 more MAC/pixel). There the latents are most of the file and the better
#: entropy model pays for its parameters and its time, where more iterations did not
#: (BENCHMARKS.md, 2026-12-06 21:00).
WIDE_ARM_HIDDEN = (16,)

#: The frame sizes where ``fast`` takes :data:`WIDE_SYNTHESIS` and :data:`WIDE_ARM_HIDDEN` at
#: high rates (λ below :data:`WIDE_CONTEXT_LMBDA`); a wider band than
#: :data:`FAST_WIDE_SYNTHESIS_PIXELS`. The two together lowered the rate-distortion cost at
#: λ = 4e-4 on all five pictures of 135,000 to 172,000 pixels that no tuning had used, by
#: 4.4 % (BENCHMARKS.md, 2026-12-06 23:40), and the ARM alone on five of 240,000 to 370,000
#: pixels by 3.9 % (2026-12-06 21:00). At 100,000 pixels neither did anything. Larger frames keep
#: the 8-wide ARM: a slower step would break the 15-minute limit of a 1152x768 point at
#: λ = 4e-4.
FAST_WIDE_HIGH_RATE_PIXELS = range(120_000, 600_000)

#: Below this λ ``fast`` takes :data:`WIDE_SYNTHESIS` on all of
#: :data:`FAST_WIDE_HIGH_RATE_PIXELS` (from 120,000 pixels), not only from 200,000. On five
#: pictures of 135,000 to 172,000 pixels that no tuning had used it lowered J by 1.9 ± 0.5 %
#: at λ = 1e-3 (six pairs of seven; BENCHMARKS.md, 2026-12-07 02:40) and by 1.4 ± 0.8 % at
#: λ = 4e-3 (five pairs of seven), but raised it at λ = 1e-2 on all three pictures tried
#: (2026-12-07 04:55), for about 1.03x the encode time. The bound is the inter-feature
#: context's (:data:`FAST_INTER_FEATURE_MAX_LMBDA`): below 200,000 pixels both come and go
#: together.
FAST_WIDE_SYNTHESIS_MID_RATE_LMBDA = FAST_INTER_FEATURE_MAX_LMBDA


def latent_gain_for(lmbda: float) -> float:
    """Cool-chic 5.0's latent gain: larger at high rates, where finer latents pay off."""
    if lmbda < 2e-4:
        return 24.0
    if lmbda < 5e-4:
        return 20.0
    return 16.0


def fast_synthesis_is_wide(lmbda: float, pixels: int) -> bool:
    """Whether ``fast`` takes :data:`WIDE_SYNTHESIS`: on :data:`FAST_WIDE_SYNTHESIS_PIXELS` at
    every rate, and on all of :data:`FAST_WIDE_HIGH_RATE_PIXELS` below
    :data:`FAST_WIDE_SYNTHESIS_MID_RATE_LMBDA`."""
    if pixels in FAST_WIDE_SYNTHESIS_PIXELS:
        return True
    return lmbda < FAST_WIDE_SYNTHESIS_MID_RATE_LMBDA and pixels in FAST_WIDE_HIGH_RATE_PIXELS


def fast_arm_is_wide(lmbda: float, pixels: int) -> bool:
    """Whether ``fast`` takes :data:`WIDE_ARM_HIDDEN`: at high rates (λ below
    :data:`WIDE_CONTEXT_LMBDA`) on :data:`FAST_WIDE_HIGH_RATE_PIXELS`."""
    return lmbda < WIDE_CONTEXT_LMBDA and pixels in FAST_WIDE_HIGH_RATE_PIXELS


def fast_takes_inter_feature(lmbda: float, pixels: int) -> bool:
    """Whether ``fast`` adds the inter-feature context: from 90,000 pixels on, but for low
    rates (λ from :data:`FAST_INTER_FEATURE_MAX_LMBDA` on) below 200,000 pixels."""
    if pixels >= FAST_INTER_FEATURE_ANY_RATE_MIN_PIXELS:
        return True
    return pixels >= FAST_INTER_FEATURE_MIN_PIXELS and lmbda < FAST_INTER_FEATURE_MAX_LMBDA


def default_model_config(
    lmbda: float = DEFAULT_LMBDA, recipe: str = DEFAULT_RECIPE, *, pixels: int
) -> ModelConfig:
    """The architecture used when none is given, from λ, the recipe and the frame's pixels.

    The network parameters are sent once per image, so their cost is spread over its pixels:
    on a 192x128 image the v2-sized decoder (≈1,900 parameters, ≈2,200 MAC/pixel) costs about
    0.43 bpp in parameters alone, more than its latents, and :data:`SMALL_DECODER` (≈260
    parameters, ≈290 MAC/pixel) measured best among the sizes tried (BENCHMARKS.md). On large
    frames the parameters cost little, but the v2-sized step is about twice as slow: at equal
    time at 1152x768 with ``medium``'s decoder it needed 24 % more bits than x265 at λ = 1e-3
    where the small one needed 3 % fewer, and 1.8 % fewer against the small one's 0.1 % more at
    λ = 4e-4 (BENCHMARKS.md, 2026-12-04 20:25). So every size gets the small decoder; the
    longer recipes add the inter-feature context and hyper-latents
    (:data:`SMALL_DECODER_CONTEXT_FOR_LONG_RECIPES`), and so does ``fast`` on larger frames
    (:func:`fast_takes_inter_feature`), with a 16-wide synthesis on mid-size frames
    (:data:`FAST_WIDE_SYNTHESIS_PIXELS`, and from 120,000 pixels below
    :data:`FAST_WIDE_SYNTHESIS_MID_RATE_LMBDA`) and, at high rates from 120,000 pixels, with a
    16-wide ARM too (:data:`FAST_WIDE_HIGH_RATE_PIXELS`). At high rates (λ below
    :data:`WIDE_CONTEXT_LMBDA`) the latents are most of a small image's file and a 24-value ARM
    context pays for its 96 extra parameters: about 5 % lower rate-distortion cost at
    λ = 4e-4 on kodim15 192x128, none at λ = 1e-3 (BENCHMARKS.md, 2026-11-30).
    """
    base = SMALL_DECODER
    if lmbda < WIDE_CONTEXT_LMBDA:
        base = dataclasses.replace(base, n_ctx_rowcol=3)
    if recipe not in QUICK_RECIPES or (
        recipe == "fast" and fast_takes_inter_feature(lmbda, pixels)
    ):
        base = dataclasses.replace(base, **SMALL_DECODER_CONTEXT_FOR_LONG_RECIPES)
    if recipe == "fast" and fast_synthesis_is_wide(lmbda, pixels):
        base = dataclasses.replace(base, synthesis=WIDE_SYNTHESIS)
    if recipe == "fast" and fast_arm_is_wide(lmbda, pixels):
        base = dataclasses.replace(base, arm_hidden=WIDE_ARM_HIDDEN)
    return dataclasses.replace(base, latent_gain=latent_gain_for(lmbda))


# --------------------------------------------------------------------------------------------
# Encoding


def encode(
    frame: Frame,
    config: EncoderConfig | None = None,
    progress: ProgressCallback = ignore_progress,
    *,
    checkpoint_path: str | Path | None = None,
) -> Encoded:
    """Encode one frame.

    With ``checkpoint_path``, the training state is saved there as the encode goes, and an
    encode that finds a checkpoint of the same frame and configuration there continues from it
    (and writes the same bytes as an uninterrupted run). The caller deletes it once the stream
    is safely written.

    Raises:
        EncodingError: training diverged with every seed tried.
        BitstreamError: the coded latents did not decode back (a bug, never silent).
    """
    config = config or EncoderConfig()
    started = time.perf_counter()
    job = _Job(
        frame=frame,
        config=config,
        model_config=config.model
        or default_model_config(config.lmbda, config.recipe, pixels=frame.width * frame.height),
        recipe=config.schedule(),
        progress=progress,
    )
    target = Target.from_frame(frame, config.device)
    checkpoint, resume = _open_checkpoint(job, checkpoint_path)
    expected = _announce_forecast(job, target, resume)
    model, seed, _ = _train(job, target, checkpoint, resume)
    encoded = _finish(job, model, seed, expected, started)
    _announce_done(job, encoded.report)
    return encoded


def train_model(
    frame: Frame, config: EncoderConfig | None = None, progress: ProgressCallback = ignore_progress
) -> tuple[CoolChicModel, ModelConfig]:
    """Train a model exactly as :func:`encode` does, and return it before quantisation.

    For ablations of architectures the stream cannot carry yet (``benchmarks/train_variants``):
    no stream is written. Returns the trained model and the architecture it has.

    Raises:
        EncodingError: training diverged with every seed tried.
    """
    config = config or EncoderConfig()
    model_config = config.model or default_model_config(
        config.lmbda, config.recipe, pixels=frame.width * frame.height
    )
    job = _Job(frame, config, model_config, config.schedule(), progress)
    model, _, _ = _train(job, Target.from_frame(frame, config.device), None, None)
    return model, model_config


def _finish(
    job: _Job, model: CoolChicModel, seed: int, expected: Forecast, started: float
) -> Encoded:
    """Quantise the trained model, write its stream, decode it back and report."""
    trained_at = time.perf_counter()
    release_freed_memory()
    bitstream, n_clamped = _quantise_and_write(job, model)
    quantised_at = time.perf_counter()
    decoded = _decode_written(bitstream, job.frame)
    decoded_at = time.perf_counter()
    seconds = {
        "encode": decoded_at - started,
        "train": trained_at - started,
        "quantise": quantised_at - trained_at,
        "decode": decoded_at - quantised_at,
    }
    report = _report(job, seed, bitstream, decoded, n_clamped, expected, seconds)
    return Encoded(bitstream=bitstream, decoded=decoded, report=report)


def _announce_done(job: _Job, report: dict[str, Any]) -> None:
    iterations = job.recipe.iterations
    job.progress(
        ProgressEvent(
            "done",
            "bitstream",
            "done",
            iterations,
            iterations,
            psnr_db=main_psnr(report),
            bpp=report["bpp"],
        )
    )


def main_psnr(report: dict[str, Any]) -> float:
    """The PSNR an encode is judged by: 4:2:0/4:4:4 YUV for YUV frames, RGB for images."""
    return float(report.get("psnr_yuv", report.get("psnr_rgb")))


# --------------------------------------------------------------------------------------------
# Rate control


#: The share of the recipe's main phase that a rate-control trial after the first replays.
CONTINUATION_FRACTION = 0.25

#: The trials of a targeted encode train at most this many times the recipe's iterations
#: together: with each trial's quantising, writing and decoding, the encode stays within
#: twice a plain encode's time. A budget in iterations, not seconds, keeps a seeded targeted
#: encode reproducible whatever the machine's load (and after a resume).
TARGET_ITERATIONS_FACTOR = 1.85


def encode_to_target(
    frame: Frame,
    config: EncoderConfig,
    rate_target: RateTarget,
    progress: ProgressCallback = ignore_progress,
    *,
    checkpoint_path: str | Path | None = None,
) -> Encoded:
    """Encode one frame at the λ that meets ``rate_target`` (a PSNR or a rate).

    The first trial is a full encode that starts at ``config.lmbda`` and moves λ toward the
    target during its main phase (:class:`~coolchic.ratecontrol.OnlineController`;
    ``checkpoint_path`` applies to it). Each later trial replays the end of the main phase
    from the first trial's model at a new λ (:mod:`coolchic.ratecontrol`), within
    :data:`TARGET_ITERATIONS_FACTOR` times the recipe's iterations in all. The stream kept is
    the trial nearest the target; its report lists every trial.

    Raises:
        TargetUnreachable: no λ in the search range reaches the target.
        EncodingError: training diverged with every seed tried.
    """
    rate_target.check_reachable(frame.width * frame.height)
    started = time.perf_counter()
    model_config = config.model or default_model_config(
        config.lmbda, config.recipe, pixels=frame.width * frame.height
    )
    recipe = config.schedule()
    target = Target.from_frame(frame, config.device)
    encodes: list[Encoded] = []
    first: dict[str, torch.Tensor] = {}
    seed = config.seed
    expected: Forecast | None = None
    replay = continuation(recipe, CONTINUATION_FRACTION)

    def run_trial(lmbda: float) -> Trial:
        nonlocal seed, expected
        trial_started = time.perf_counter()
        if not encodes:
            job = _Job(frame, config, model_config, recipe, progress)
            checkpoint, resume = _open_checkpoint(job, checkpoint_path)
            expected = _announce_forecast(job, target, resume)
            overhead = functools.partial(_overhead_bpp, model_config, frame)
            controller = OnlineController(rate_target, overhead)
            model, seed, lmbda = _train(job, target, checkpoint, resume, controller.update)
            job = dataclasses.replace(job, config=dataclasses.replace(config, lmbda=lmbda))
            first.update({key: value.detach().clone() for key, value in model.state_dict().items()})
            kind = "full"
        else:
            trial_config = dataclasses.replace(config, lmbda=lmbda)
            job = _Job(frame, trial_config, model_config, replay, progress)
            _announce_trial(job, len(encodes) + 1, encodes[-1].report)
            model = _continue(job, target, seed, first)
            kind = "continued"
        assert expected is not None  # the first trial's: later trials are not forecast apart
        encoded = _finish(job, model, seed, expected, trial_started)
        encodes.append(encoded)
        report = encoded.report
        seconds, iterations = report["encode_seconds"], report["iterations"]
        return Trial(lmbda, main_psnr(report), report["bpp"], seconds, kind, iterations)

    def may_continue(trials: list[Trial], _next_lmbda: float) -> bool:
        spent = sum(trial.iterations for trial in trials)
        return spent + replay.iterations <= TARGET_ITERATIONS_FACTOR * recipe.iterations

    result = search_lmbda(
        rate_target,
        run_trial,
        first_lmbda=config.lmbda,
        may_continue=may_continue,
        responsiveness=CONTINUATION_RESPONSIVENESS,
    )
    kept = encodes[result.kept]
    report = {
        **kept.report,
        "target": {
            "metric": rate_target.metric,
            "value": rate_target.value,
            "met": result.met,
            "achieved": rate_target.achieved(main_psnr(kept.report), kept.report["bpp"]),
            "tolerance": PSNR_TOLERANCE_DB if rate_target.metric == "psnr" else BPP_TOLERANCE,
        },
        "trials": [trial.as_dict() for trial in result.trials],
        "iterations": sum(encoded.report["iterations"] for encoded in encodes),
        "encode_seconds": round(time.perf_counter() - started, 3),
    }
    if not result.met:
        logger.warning(
            "target %s not met within the time budget: kept the closest trial, %g",
            rate_target.describe(),
            report["target"]["achieved"],
        )
    _announce_done(_Job(frame, config, model_config, recipe, progress), report)
    return Encoded(bitstream=kept.bitstream, decoded=kept.decoded, report=report)


def _overhead_bpp(model_config: ModelConfig, frame: Frame, lmbda: float) -> float:
    """About what a stream adds to its latents' bits, per pixel: the header, and the
    networks, whose quantisation is coarser at larger λ: on the small decoder about 9 bits
    per parameter at λ = 4e-4, 7 at 1e-3, 5 at 2e-2."""
    counts = parameter_counts(model_config, frame.height, frame.width)
    networks = counts.arm + counts.upsampling + counts.synthesis
    bits_per_parameter = min(9.0, max(5.0, 7.0 - 1.5 * math.log10(lmbda / 1e-3)))
    return (MIN_STREAM_BITS + bits_per_parameter * networks) / (frame.width * frame.height)


def _announce_trial(job: _Job, number: int, last: dict[str, Any]) -> None:
    message = (
        f"rate control: trial {number} at λ {job.config.lmbda:.4g}, continuing the first "
        f"trial's model (last trial: {main_psnr(last):.3f} dB, {last['bpp']:.4f} bpp)"
    )
    logger.debug("%s", message)
    total = job.recipe.iterations
    job.progress(ProgressEvent("start", "train", "rate-control", 0, total, message=message))


def _continue(
    job: _Job, target: Target, seed: int, weights: dict[str, torch.Tensor]
) -> CoolChicModel:
    """Train a copy of ``weights`` through the job's continuation recipe at the job's λ."""
    config, frame = job.config, job.frame
    trainer = Trainer(
        target=target,
        lmbda=config.lmbda,
        recipe=job.recipe,
        model_factory=lambda _seed: CoolChicModel(job.model_config, frame.height, frame.width).to(
            config.device
        ),
        seed=seed,
        progress=job.progress,
        start_lr=config.start_lr,
        initial=weights,
    )
    model, _ = trainer.run()
    return model


@dataclass(frozen=True, eq=False)
class _Job:
    """What every phase of one encode reads."""

    frame: Frame
    config: EncoderConfig
    model_config: ModelConfig
    recipe: Recipe
    progress: ProgressCallback


def _open_checkpoint(
    job: _Job, path: str | Path | None
) -> tuple[Checkpoint | None, TrainingState | None]:
    """The checkpoint to save to, and the state it holds for this very encode (if any)."""
    if path is None:
        return None, None
    checkpoint = Checkpoint(path, encode_key(job.frame, job.config, job.model_config))
    return checkpoint, checkpoint.load()


def _announce_forecast(job: _Job, target: Target, resume: TrainingState | None) -> Forecast:
    """Time a few training steps here and send the expected time as the first event."""
    done = 0 if resume is None else resume.iterations_done
    config, frame = job.config, job.frame
    expected = forecast(
        job.recipe,
        calibrate(target, job.model_config, config.lmbda, config.device),
        pixels=frame.width * frame.height,
        iterations_done=done,
    )
    logger.debug("%s", expected.describe())
    job.progress(
        ProgressEvent(
            "start",
            "train",
            FORECAST_PHASE,
            done,
            job.recipe.iterations,
            eta_s=expected.seconds,
            message=expected.describe(),
        )
    )
    return expected


def _train(
    job: _Job,
    target: Target,
    checkpoint: Checkpoint | None,
    resume: TrainingState | None,
    lmbda_update: LambdaUpdate | None = None,
) -> tuple[CoolChicModel, int, float]:
    """The trained model, its seed and its final λ (rate control may move it): a diverged run
    starts again from scratch, next seed."""
    config, frame = job.config, job.frame
    seed = config.seed if resume is None else resume.seed
    for attempt in range(1, MAX_SEED_ATTEMPTS + 1):
        trainer = Trainer(
            target=target,
            lmbda=config.lmbda,
            recipe=job.recipe,
            model_factory=lambda _seed: CoolChicModel(
                job.model_config, frame.height, frame.width
            ).to(config.device),
            seed=seed,
            progress=job.progress,
            start_lr=config.start_lr,
            checkpoint=checkpoint,
            resume=resume,
            lmbda_update=lmbda_update,
        )
        try:
            model, _ = trainer.run()
            return model, seed, trainer.lmbda
        except TrainingDiverged as error:
            resume = None  # another seed starts from scratch
            if attempt == MAX_SEED_ATTEMPTS:
                raise EncodingError(f"{error}; gave up after {attempt} seeds") from error
            message = f"{error}; retrying with seed {seed + 1}"
            logger.warning("%s", message)
            total = job.recipe.iterations
            job.progress(ProgressEvent("warning", "train", "retry", 0, total, message=message))
            seed += 1
    raise AssertionError("unreachable: the last attempt returns or raises")


def _quantise_and_write(job: _Job, model: CoolChicModel) -> tuple[bytes, int]:
    """Quantise the networks on the CPU (RDOQ on small images) and write the stream."""
    iterations = job.recipe.iterations
    job.progress(
        ProgressEvent(
            "progress",
            "bitstream",
            "quantise",
            iterations,
            iterations,
            message="quantising the networks",
        )
    )
    model = model.cpu()
    frame = job.frame
    rdoq = takes_rdoq(job.recipe, frame.width * frame.height)
    target = Target.from_frame(frame, "cpu")
    groups = quantize_networks(model, target, job.config.lmbda, rdoq=rdoq)
    if rdoq:
        rdoq_improbable_latents(model, target, job.config.lmbda)
    return _write_stream(model, groups, frame)


def _decode_written(bitstream: bytes, frame: Frame) -> Frame:
    """The real decoder's output; the stream has no source name, so the source's is kept.

    The stream was just written here: no memory limit, but say if decoders will refuse it.
    """
    _warn_if_over_decode_limit(bitstream)
    return dataclasses.replace(decode(bitstream, memory_limit=False), source=frame.source)


def _report(
    job: _Job,
    seed: int,
    bitstream: bytes,
    decoded: Frame,
    n_clamped: int,
    expected: Forecast,
    seconds: dict[str, float],
) -> dict[str, Any]:
    """The encode's report: what the stream says about itself, then how it was made."""
    header, nn_bytes, latent_bytes = unpack_stream(bitstream)
    config = job.config
    return {
        **stream_report(header, len(bitstream)),
        "recipe": config.recipe,
        "iterations_scale": config.iterations_scale,
        "lmbda": config.lmbda,
        "seed": seed,
        "iterations": job.recipe.iterations,
        "nn_bits": 8 * len(nn_bytes),
        "latent_bits": 8 * len(latent_bytes),
        **frame_metrics(job.frame, decoded).as_dict(),
        "encode_seconds": round(seconds["encode"], 3),
        "expected_seconds": round(expected.seconds, 3),
        "forecast": expected.steps.as_dict(),
        "train_seconds": round(seconds["train"], 3),
        "quantise_seconds": round(seconds["quantise"], 3),
        "decode_seconds": round(seconds["decode"], 3),
        "device": config.device,
        "threads": torch.get_num_threads(),
        "version": __version__,
        "latents_clamped": n_clamped,
    }


def encode_key(frame: Frame, config: EncoderConfig, model_config: ModelConfig) -> str:
    """What a checkpoint must match to be resumed: the samples, the configuration, versions.

    Thread counts are left out: the training rounds the same at any thread count
    (:mod:`coolchic.model.ordered`), so a resume on other threads continues the same encode.
    """
    digest = hashlib.sha256()
    for plane in frame.planes:
        digest.update(np.ascontiguousarray(plane).tobytes())
    described = (
        CHECKPOINT_FORMAT,
        __version__,
        FORMAT_VERSION,
        frame.format,
        frame.bit_depth,
        frame.width,
        frame.height,
        dataclasses.replace(config, model=None),
        model_config,
    )
    digest.update(repr(described).encode())
    return digest.hexdigest()


def _warn_if_over_decode_limit(bitstream: bytes) -> None:
    """Log when decoding the new stream needs more memory than a default decoder allows."""
    header, _, _ = unpack_stream(bitstream)
    estimate = estimate_decode_bytes(header)
    limit = decode_memory_limit()
    if estimate > limit:
        logger.warning(
            "decoding this stream needs about %s, more than the decoder's limit of %s: "
            "decode it with %s set higher",
            format_bytes(estimate),
            format_bytes(limit),
            MEMORY_LIMIT_VARIABLE,
        )


def _write_stream(
    model: CoolChicModel, groups: QuantizedNetworks, frame: Frame
) -> tuple[bytes, int]:
    """Range-code the latents (hyper-latents included) with the integer ARM and inter-feature
    context, code the networks, pack the stream."""
    arm = groups.arm()
    latents = [
        grid.reshape(grid.shape[-2:]).to(torch.int64).numpy() for grid in model.quantized_latents()
    ]
    config = model.config
    coded = encode_latents(
        latents,
        arm,
        config.n_ctx_rowcol,
        config.coarser_contexts,
        ifce=groups.ifce(),
        n_hyper=config.hyper_grids,
    )
    if coded.n_clamped:
        logger.warning("%d latent values were outside [-64, 63] and were clamped", coded.n_clamped)
    nn_bytes, codes = groups.encode()
    source: YuvName | None = frame.source
    header = header_for_model(
        model.config,
        frame.width,
        frame.height,
        frame.format,
        frame.bit_depth,
        exps={(g.module, g.kind): g.exponent for g in groups},
        codes=codes,
        zero_grids=coded.zero_grids,
        fps_text=source.fps_text if source else "",
    )
    return pack_stream(header, nn_bytes, coded.data), coded.n_clamped
