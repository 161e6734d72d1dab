"""``.cool`` bytes → frame: parse, check the memory bound, decode the networks and the latents,
upsample, synthesise, round (numpy and constriction only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from coolchic.bitstream.fixed_point import FixedPointArm, FixedPointIfce
from coolchic.bitstream.header import StreamHeader, unpack_stream
from coolchic.bitstream.latents import decode_latents
from coolchic.decode_memory import check_decode_memory
from coolchic.decoder.networks import synthesize, upsample
from coolchic.errors import BitstreamError
from coolchic.io.frame import Frame
from coolchic.io.naming import YuvName, name_from_stem
from coolchic.model.config import LayerSpec, ModelConfig
from coolchic.nnquant.params import STABILISER, QuantizedNetworks

__all__ = ["Decoded", "decode", "decode_stream", "model_config_from_header"]


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
        coarser_contexts=header.coarser_contexts,
        ifce_features=header.ifce_features,
        hyper_grids=header.hyper_grids,
        arm_stabiliser=header.arm_stabiliser,
        synthesis_stabiliser=header.synthesis_stabiliser,
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
        check_decode_memory(header, memory_limit)
    try:
        config = model_config_from_header(header)
    except ValueError as error:
        raise BitstreamError(f"header describes an invalid architecture: {error}") from None
    parameters = QuantizedNetworks.decode(nn_bytes, config, header.nn_coding)
    arm, ifce = _entropy_model(parameters)
    coded = decode_latents(
        latent_bytes,
        header.coded_grid_shapes,
        arm,
        header.n_ctx_rowcol,
        zero_grids=header.coded_zero_flags,
        n_coarser=header.coarser_contexts,
        ifce=ifce,
        n_hyper=header.hyper_grids,
    )
    # the hyper-latent grids served the entropy model only
    latents = [grid.astype(np.float64) for grid in coded[: header.n_grids]]
    del coded
    with np.errstate(over="ignore", invalid="ignore"):  # only hostile weights overflow
        x_hat = _reconstruct(latents, parameters, config)
        frame = _to_frame(x_hat, header, _source_for(header, stem))
    return Decoded(frame=frame, header=header)


def _entropy_model(
    parameters: QuantizedNetworks,
) -> tuple[FixedPointArm, FixedPointIfce | None]:
    """The integer ARM and inter-feature context the latents were coded with."""
    try:
        return parameters.arm(), parameters.ifce()
    except ValueError as error:
        raise BitstreamError(f"invalid ARM parameters: {error}") from None


def _reconstruct(
    latents: list[np.ndarray], parameters: QuantizedNetworks, config: ModelConfig
) -> np.ndarray:
    """Upsampling and synthesis of the latents (float64): ``[3, H, W]``, unclamped."""
    filters = parameters[("upsampling", "weight")].values()
    stack = upsample(
        latents,
        filters["transposed_half"],
        filters.get("preconcat_half"),
        kernel=config.upsampling_kernel,
    )
    weights = parameters[("synthesis", "weight")].values()
    biases = parameters[("synthesis", "bias")].values()
    stabiliser = weights.pop(STABILISER, None)
    return synthesize(
        stack, config.synthesis, list(weights.values()), list(biases.values()), stabiliser
    )


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


def _to_frame(x_hat: np.ndarray, header: StreamHeader, source: YuvName | None) -> Frame:
    """Synthesis output ``[3, H, W]`` (float64) → clamped, rounded frame.

    4:2:0 chroma is the mean of each 2x2 block, summed in the order torch's ``avg_pool2d``
    sums it (top-left, top-right, bottom-left, bottom-right), taken before clamping.
    """
    peak = float((1 << header.bit_depth) - 1)
    if header.frame_format == "yuv420":
        chroma = x_hat[1:3]
        pooled = ((chroma[:, 0::2, 0::2] + chroma[:, 0::2, 1::2]) + chroma[:, 1::2, 0::2]) + chroma[
            :, 1::2, 1::2
        ]
        pooled *= 0.25
        planes = [x_hat[0], pooled[0], pooled[1]]
    else:
        planes = list(x_hat)
    dtype = np.uint8 if header.bit_depth <= 8 else np.uint16
    integers = tuple(np.rint(np.clip(plane, 0.0, 1.0) * peak).astype(dtype) for plane in planes)
    return Frame.from_integer_planes(
        integers,  # type: ignore[arg-type]
        fmt=header.frame_format,
        bit_depth=header.bit_depth,
        source=source,
    )
