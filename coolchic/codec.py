"""The public API: ``encode(frame, config, progress) -> Encoded`` and ``decode(bytes) -> Frame``.

Encoding overfits a model to the frame (:mod:`coolchic.train`), quantises its networks by
rate-distortion cost, range-codes the latents through the decoder's own code path (with an
integer ARM, so entropy decoding is bit-exact on every platform), writes the self-describing
stream, then runs the real decoder on those bytes: the reconstruction and the PSNR that the
encoder reports are the decoder's.

Decoding runs upsampling and synthesis in float64 on the CPU, so that the 8/10-bit rounding of
the output does not depend on the thread count or the BLAS kernels picked.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from coolchic import __version__
from coolchic.allocator import release_freed_memory
from coolchic.bitstream.constants import FORMAT_VERSION, NN_GROUPS
from coolchic.bitstream.fixed_point import FixedPointArm, QuantizedLayer
from coolchic.bitstream.header import (
    GroupCoding,
    StreamHeader,
    SynthesisLayerField,
    pack_stream,
    unpack_stream,
)
from coolchic.bitstream.latents import decode_latents, encode_latents
from coolchic.bitstream.nn_params import decode_quantized, dequantize, encode_quantized
from coolchic.decode_memory import (
    MEMORY_LIMIT_VARIABLE,
    check_decode_memory,
    decode_memory_limit,
    estimate_decode_bytes,
    format_bytes,
)
from coolchic.errors import BitstreamError, EncodingError
from coolchic.forecast import calibrate, forecast
from coolchic.io.frame import Frame
from coolchic.io.metrics import frame_metrics
from coolchic.io.naming import YuvName, name_from_stem
from coolchic.model.complexity import mac_per_pixel
from coolchic.model.config import LayerSpec, ModelConfig, parse_synthesis
from coolchic.model.coolchic import CoolChicModel
from coolchic.train.checkpoint import CHECKPOINT_FORMAT, Checkpoint
from coolchic.train.loss import Target
from coolchic.train.nn_quantization import (
    RDOQ_MAX_PIXELS,
    QuantizedGroup,
    group_parameters,
    predicted_integers,
    quantize_networks,
)
from coolchic.train.progress import (
    FORECAST_PHASE,
    ProgressCallback,
    ProgressEvent,
    ignore_progress,
)
from coolchic.train.recipes import get_recipe
from coolchic.train.trainer import Trainer, TrainingDiverged

logger = logging.getLogger(__name__)

DEFAULT_RECIPE = "fast"
DEFAULT_LMBDA = 1e-3
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
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lmbda) and self.lmbda > 0):
            raise ValueError(f"lmbda must be a finite number > 0, found {self.lmbda}")
        get_recipe(self.recipe)
        if self.start_lr is not None and not (math.isfinite(self.start_lr) and self.start_lr > 0):
            raise ValueError(f"start_lr must be a finite number > 0, found {self.start_lr}")


@dataclass(frozen=True, eq=False)
class Encoded:
    """An encoded frame: the file's bytes, the decoder's reconstruction, the report."""

    bitstream: bytes
    decoded: Frame
    report: dict[str, Any] = field(default_factory=dict)


#: Up to this many pixels an image gets the small decoder whatever the recipe (see
#: :func:`default_model_config`).
SMALL_IMAGE_PIXELS = 250_000

#: The small decoder: 12 causal contexts, one hidden ARM layer of 8, a 1x1 synthesis 7→8→3.
SMALL_DECODER = ModelConfig(
    n_ctx_rowcol=2,
    arm_hidden=(8,),
    synthesis=parse_synthesis("8-1-linear-relu,3-1-linear-none"),
)

#: Recipes that keep the small decoder at every size: their budget is iterations, and at
#: 1920x1080 only the small decoder's step (0.40 s, against 0.96 s for the v2-sized one,
#: BENCHMARKS.md "training step") lets ``fast`` finish within half an hour on two cores.
SMALL_DECODER_RECIPES = frozenset({"instant", "faster", "fast"})

#: Below this λ (high rates) the small decoder's ARM sees 24 contexts instead of 12.
WIDE_CONTEXT_LMBDA = 6e-4


def latent_gain_for(lmbda: float) -> float:
    """Cool-chic 5.0's latent gain: larger at high rates, where finer latents pay off."""
    if lmbda < 2e-4:
        return 24.0
    if lmbda < 5e-4:
        return 20.0
    return 16.0


def default_model_config(
    frame: Frame, lmbda: float = DEFAULT_LMBDA, recipe: str = DEFAULT_RECIPE
) -> ModelConfig:
    """The architecture used when none is given.

    The network parameters are sent once per image, so their cost is spread over its pixels:
    on a 192x128 image the v2-sized decoder (≈1,900 parameters, ≈2,200 MAC/pixel) costs about
    0.43 bpp in parameters alone, more than its latents. Images up to
    :data:`SMALL_IMAGE_PIXELS` therefore get :data:`SMALL_DECODER` (≈260 parameters, ≈290
    MAC/pixel), which measured best among the sizes tried (BENCHMARKS.md). Larger images keep
    it with the quick recipes (:data:`SMALL_DECODER_RECIPES`), whose time it decides, and get
    the v2-sized default with the others. At high rates (λ below
    :data:`WIDE_CONTEXT_LMBDA`) the latents are most of a small image's file and a 24-value
    ARM context pays for its 96 extra parameters: about 5 % lower rate-distortion cost at
    λ = 4e-4 on kodim15 192x128, none at λ = 1e-3 (BENCHMARKS.md, 2026-11-30).
    """
    return default_model_config_for_size(frame.width, frame.height, lmbda, recipe)


def default_model_config_for_size(
    width: int, height: int, lmbda: float = DEFAULT_LMBDA, recipe: str = DEFAULT_RECIPE
) -> ModelConfig:
    """:func:`default_model_config` from the frame's size alone (before it is read)."""
    if width * height > SMALL_IMAGE_PIXELS and recipe not in SMALL_DECODER_RECIPES:
        base = ModelConfig()
    elif lmbda < WIDE_CONTEXT_LMBDA:
        base = dataclasses.replace(SMALL_DECODER, n_ctx_rowcol=3)
    else:
        base = SMALL_DECODER
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
    model_config = config.model or default_model_config(frame, config.lmbda, config.recipe)
    recipe = get_recipe(config.recipe)
    target = Target.from_frame(frame, config.device)

    checkpoint, resume = None, None
    if checkpoint_path is not None:
        checkpoint = Checkpoint(checkpoint_path, encode_key(frame, config, model_config))
        resume = checkpoint.load()
    expected = forecast(
        recipe,
        calibrate(target, model_config, config.lmbda, config.device),
        pixels=frame.width * frame.height,
        iterations_done=0 if resume is None else resume.iterations_done,
    )
    logger.debug("%s", expected.describe())
    progress(
        ProgressEvent(
            "start",
            "train",
            FORECAST_PHASE,
            0 if resume is None else resume.iterations_done,
            recipe.iterations,
            eta_s=expected.seconds,
            message=expected.describe(),
        )
    )
    model = None
    seed = config.seed if resume is None else resume.seed
    for attempt in range(1, MAX_SEED_ATTEMPTS + 1):
        trainer = Trainer(
            target=target,
            lmbda=config.lmbda,
            recipe=recipe,
            model_factory=lambda _seed: CoolChicModel(model_config, frame.height, frame.width).to(
                config.device
            ),
            seed=seed,
            progress=progress,
            start_lr=config.start_lr,
            checkpoint=checkpoint,
            resume=resume,
        )
        try:
            model, _ = trainer.run()
            break
        except TrainingDiverged as error:
            resume = None  # another seed starts from scratch
            if attempt == MAX_SEED_ATTEMPTS:
                raise EncodingError(f"{error}; gave up after {attempt} seeds") from error
            message = f"{error}; retrying with seed {seed + 1}"
            logger.warning("%s", message)
            progress(
                ProgressEvent("warning", "train", "retry", 0, recipe.iterations, message=message)
            )
            seed += 1
    assert model is not None
    trained_s = time.perf_counter() - started
    release_freed_memory()

    progress(
        ProgressEvent(
            "progress",
            "bitstream",
            "quantise",
            recipe.iterations,
            recipe.iterations,
            message="quantising the networks",
        )
    )
    model = model.cpu()
    cpu_target = Target.from_frame(frame, "cpu")
    rdoq = frame.width * frame.height <= RDOQ_MAX_PIXELS
    groups = quantize_networks(model, cpu_target, config.lmbda, rdoq=rdoq)
    bitstream, n_clamped = _write_stream(model, groups, frame)
    quantised_s = time.perf_counter() - started - trained_s

    decode_start = time.perf_counter()
    # The real decoder's output; the stream has no source name, so the source's is kept. The
    # stream was just written here: no memory limit, but say if decoders will refuse it.
    _warn_if_over_decode_limit(bitstream)
    decoded = dataclasses.replace(decode(bitstream, memory_limit=False), source=frame.source)
    decode_s = time.perf_counter() - decode_start
    encode_s = time.perf_counter() - started
    bits = 8 * len(bitstream)
    nn_bytes, latent_bytes = _section_bytes(bitstream)
    n_pixels = frame.width * frame.height
    macs = mac_per_pixel(model_config, frame.height, frame.width)
    report: dict[str, Any] = {
        "width": frame.width,
        "height": frame.height,
        "format": frame.format,
        "bit_depth": frame.bit_depth,
        "recipe": config.recipe,
        "lmbda": config.lmbda,
        "seed": seed,
        "iterations": recipe.iterations,
        "bits": bits,
        "bpp": bits / n_pixels,
        "nn_bits": 8 * nn_bytes,
        "latent_bits": 8 * latent_bytes,
        **frame_metrics(frame, decoded).as_dict(),
        "encode_seconds": round(encode_s, 3),
        "expected_seconds": round(expected.seconds, 3),
        "forecast": expected.steps.as_dict(),
        "train_seconds": round(trained_s, 3),
        "quantise_seconds": round(quantised_s, 3),
        "decode_seconds": round(decode_s, 3),
        "device": config.device,
        "threads": torch.get_num_threads(),
        "version": __version__,
        "mac_per_pixel": round(macs.total, 1),
        "mac_per_pixel_detail": {
            "arm": round(macs.arm, 1),
            "upsampling": round(macs.upsampling, 1),
            "synthesis": round(macs.synthesis, 1),
        },
        "architecture": {
            "n_grids": model_config.n_grids,
            "n_ctx_rowcol": model_config.n_ctx_rowcol,
            "layers_arm": ",".join(str(w) for w in model_config.arm_hidden),
            "layers_synthesis": model_config.synthesis_text,
            "upsampling_kernel": model_config.upsampling_kernel,
            "preconcat_kernel": model_config.preconcat_kernel,
        },
        "latents_clamped": n_clamped,
    }
    progress(
        ProgressEvent(
            "done",
            "bitstream",
            "done",
            recipe.iterations,
            recipe.iterations,
            psnr_db=report.get("psnr_yuv", report.get("psnr_rgb")),
            bpp=report["bpp"],
        )
    )
    return Encoded(bitstream=bitstream, decoded=decoded, report=report)


def encode_key(frame: Frame, config: EncoderConfig, model_config: ModelConfig) -> str:
    """What a checkpoint must match to be resumed: the samples, the configuration, versions.

    Thread counts are left out on purpose: a resume on other threads is a valid encode, only
    not bit-identical to the uninterrupted one.
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
    estimate = estimate_decode_bytes(header, threads=torch.get_num_threads())
    limit = decode_memory_limit()
    if estimate > limit:
        logger.warning(
            "decoding this stream needs about %s, more than the decoder's limit of %s: "
            "decode it with %s set higher",
            format_bytes(estimate),
            format_bytes(limit),
            MEMORY_LIMIT_VARIABLE,
        )


def _section_bytes(bitstream: bytes) -> tuple[int, int]:
    header, nn_bytes, latent_bytes = unpack_stream(bitstream)
    del header
    return len(nn_bytes), len(latent_bytes)


def _arm_layers(
    q_weights: list[np.ndarray], q_biases: list[np.ndarray], weight_exp: int, bias_exp: int
) -> tuple[list[QuantizedLayer], QuantizedLayer]:
    layers = [
        QuantizedLayer(weight, bias, weight_exp, bias_exp)
        for weight, bias in zip(q_weights, q_biases, strict=True)
    ]
    return layers[:-1], layers[-1]


def _write_stream(
    model: CoolChicModel, groups: tuple[QuantizedGroup, ...], frame: Frame
) -> tuple[bytes, int]:
    by_key = {(g.module, g.kind): g for g in groups}
    arm_w, arm_b = by_key[("arm", "weight")], by_key[("arm", "bias")]
    hidden, output = _arm_layers(
        list(arm_w.integers), list(arm_b.integers), arm_w.exponent, arm_b.exponent
    )
    arm = FixedPointArm.from_quantized(hidden, output)
    latents = [
        grid.reshape(grid.shape[-2:]).to(torch.int64).numpy() for grid in model.quantized_latents()
    ]
    coded = encode_latents(latents, arm, model.config.n_ctx_rowcol)
    if coded.n_clamped:
        logger.warning("%d latent values were outside [-64, 63] and were clamped", coded.n_clamped)
    q_groups: dict[str, dict[str, list[np.ndarray]]] = {}
    for group in groups:
        if group.integers:
            q_groups.setdefault(group.module, {})[group.kind] = list(group.coded())
    nn_bytes, orders = encode_quantized(q_groups)
    source: YuvName | None = frame.source
    header = StreamHeader(
        width=frame.width,
        height=frame.height,
        frame_format=frame.format,
        bit_depth=frame.bit_depth,
        n_grids=model.config.n_grids,
        n_ctx_rowcol=model.config.n_ctx_rowcol,
        arm_hidden=tuple(model.config.arm_hidden),
        upsampling_kernel=model.config.upsampling_kernel,
        preconcat_kernel=model.config.preconcat_kernel,
        synthesis=tuple(
            SynthesisLayerField(layer.out_channels, layer.kernel, layer.kind, layer.nonlinearity)
            for layer in model.config.synthesis
        ),
        nn_coding=tuple(
            GroupCoding(exp=g.exponent, order=orders.get((g.module, g.kind), 0)) for g in groups
        ),
        zero_grids=coded.zero_grids,
        fps_text=source.fps_text if source else "",
    )
    return pack_stream(header, nn_bytes, coded.data), coded.n_clamped


# --------------------------------------------------------------------------------------------
# Decoding


@dataclass(frozen=True, eq=False)
class Decoded:
    """A decoded stream: the frame and the header it was described by."""

    frame: Frame
    header: StreamHeader


def model_config_from_header(header: StreamHeader) -> ModelConfig:
    """The architecture a header describes."""
    return ModelConfig(
        n_grids=header.n_grids,
        n_ctx_rowcol=header.n_ctx_rowcol,
        arm_hidden=tuple(header.arm_hidden),
        synthesis=tuple(
            LayerSpec(layer.out_channels, layer.kernel, layer.kind, layer.nonlinearity)
            for layer in header.synthesis
        ),
        upsampling_kernel=header.upsampling_kernel,
        preconcat_kernel=header.preconcat_kernel,
    )


def decode(
    data: bytes, *, stem: str | None = None, memory_limit: int | Literal[False] | None = None
) -> Frame:
    """Decode a coolchic bitstream into a frame (see :func:`decode_stream`)."""
    return decode_stream(data, stem=stem, memory_limit=memory_limit).frame


def decode_stream(
    data: bytes, *, stem: str | None = None, memory_limit: int | Literal[False] | None = None
) -> Decoded:
    """Decode a coolchic bitstream.

    Args:
        data: the whole ``.cool`` file.
        stem: the ``.cool`` file's stem, if there is one: the stream does not store the source
            name, so a YUV frame's ``source`` is rebuilt from the stem (see
            :func:`~coolchic.io.naming.name_from_stem`) and the stored frame rate; without a
            stem, or without any frame rate, ``source`` is None.
        memory_limit: refuse streams whose decoding is estimated to need more bytes
            (:mod:`coolchic.decode_memory`); None: ``COOLCHIC_DECODE_MEMORY_LIMIT`` or the
            default, 8 GiB; False: no limit (for streams this process has just written).

    Raises:
        BitstreamError: truncated, corrupted or unsupported stream (never another exception
            type for bad bytes).
        LimitExceeded: (a BitstreamError) the header asks for more memory than the limit,
            checked before anything the size of the image is allocated.
    """
    header, nn_bytes, latent_bytes = unpack_stream(data)
    if memory_limit is not False:
        check_decode_memory(header, memory_limit, threads=torch.get_num_threads())
    try:
        config = model_config_from_header(header)
    except ValueError as error:
        raise BitstreamError(f"header describes an invalid architecture: {error}") from None
    with torch.inference_mode():
        model = CoolChicModel(config, header.height, header.width).double()
        shapes: dict[str, dict[str, list[tuple[int, ...]]]] = {}
        for module, kind in NN_GROUPS:
            parameters = group_parameters(model, module, kind)
            if parameters:
                shapes.setdefault(module, {})[kind] = [tuple(p.shape) for _, p in parameters]
        orders = {
            key: coding.order for key, coding in zip(NN_GROUPS, header.nn_coding, strict=True)
        }
        exps = {key: coding.exp for key, coding in zip(NN_GROUPS, header.nn_coding, strict=True)}
        q = decode_quantized(nn_bytes, shapes, orders)
        for module, kinds in q.items():
            for kind, arrays in kinds.items():
                predictions = predicted_integers(model, module, kind, exps[(module, kind)])
                kinds[kind] = [a + p for a, p in zip(arrays, predictions, strict=True)]
        try:
            hidden, output = _arm_layers(
                q["arm"]["weight"], q["arm"]["bias"], exps[("arm", "weight")], exps[("arm", "bias")]
            )
            arm = FixedPointArm.from_quantized(hidden, output)
        except ValueError as error:
            raise BitstreamError(f"invalid ARM parameters: {error}") from None
        latents = decode_latents(
            latent_bytes,
            model.grid_shapes,
            arm,
            header.n_ctx_rowcol,
            zero_grids=header.zero_grids or None,
        )
        for module in ("upsampling", "synthesis"):
            for kind, arrays in q.get(module, {}).items():
                for (_, parameter), array in zip(
                    group_parameters(model, module, kind), arrays, strict=True
                ):
                    values = dequantize(array, exps[(module, kind)]).astype(np.float64)
                    parameter.copy_(torch.from_numpy(values))
        grids = [torch.from_numpy(g.astype(np.float64))[None, None] for g in latents]
        del latents  # the int64 copies: not needed past this point
        x_hat = model.decode_from_latents(grids)
        frame = _to_frame(x_hat, header, _source_for(header, stem))
    return Decoded(frame=frame, header=header)


def _source_for(header: StreamHeader, stem: str | None) -> YuvName | None:
    """The YUV name fields of a decoded stream: name from the file stem, frame rate stored."""
    if stem is None or header.frame_format == "rgb":
        return None
    name, stem_fps = name_from_stem(stem)
    fps_text = header.fps_text or stem_fps
    if not fps_text:
        return None
    try:
        return YuvName(
            name,
            header.width,
            header.height,
            fps_text,
            header.frame_format,  # type: ignore[arg-type]
            header.bit_depth,
        )
    except ValueError:
        return None


def _to_frame(x_hat: torch.Tensor, header: StreamHeader, source: YuvName | None) -> Frame:
    """Synthesis output ``[1, 3, H, W]`` (float64) → clamped, rounded frame."""
    peak = float((1 << header.bit_depth) - 1)
    if header.frame_format == "yuv420":
        planes = [x_hat[0, 0], *F.avg_pool2d(x_hat[:, 1:3], kernel_size=2)[0]]
    else:
        planes = list(x_hat[0])
    dtype = np.uint8 if header.bit_depth <= 8 else np.uint16
    integers = tuple(
        torch.round(plane.clamp(0.0, 1.0) * peak).numpy().astype(dtype) for plane in planes
    )
    return Frame.from_integer_planes(
        integers,  # type: ignore[arg-type]
        fmt=header.frame_format,
        bit_depth=header.bit_depth,
        source=source,
    )
