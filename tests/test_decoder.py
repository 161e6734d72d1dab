"""The torch-free decoder: no torch on the decode path, the same planes as the torch model's
float64 forward pass (the decoder it replaces, kept here as the reference), one shared layout."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from coolchic.bitstream.constants import NN_GROUPS
from coolchic.bitstream.fixed_point import FixedPointArm, FixedPointIfce, QuantizedLayer
from coolchic.bitstream.header import (
    FrameFormat,
    GroupCoding,
    StreamHeader,
    SynthesisLayerField,
    header_for_model,
    pack_stream,
    unpack_stream,
)
from coolchic.bitstream.latents import decode_latents, encode_latents
from coolchic.bitstream.nn_params import decode_quantized, encode_quantized
from coolchic.codec import SMALL_DECODER, EncoderConfig, encode
from coolchic.decoder import decode, decode_stream, model_config_from_header
from coolchic.decoder.networks import synthesize, upsample
from coolchic.decoder.stream import _to_frame
from coolchic.io import Frame
from coolchic.model import layout
from coolchic.model.config import ModelConfig, parse_synthesis
from coolchic.model.coolchic import CoolChicModel
from coolchic.model.synthesis import Synthesis
from coolchic.model.upsampling import Upsampling
from coolchic.nnquant import params
from coolchic.nnquant.params import dequantize
from coolchic.nnquant.search import group_parameters

V2 = ModelConfig()


# --------------------------------------------------------------------------------------------
# The reference: the torch float64 decoder as it was before the numpy one


def _declared_group(model: CoolChicModel, module: str, kind: str) -> list[tuple[str, torch.Tensor]]:
    """A group as the coding order was first defined: the module's parameters of that kind
    (biases end in ``.bias``), in declaration order."""
    return [
        (name, parameter)
        for name, parameter in model.module(module).named_parameters()  # type: ignore[arg-type]
        if ("bias" if name.rsplit(".", 1)[-1] == "bias" else "weight") == kind
    ]


def fixed_point_arm(
    weights: list[np.ndarray], biases: list[np.ndarray], weight_exp: int, bias_exp: int
) -> FixedPointArm:
    """The integer ARM of the ARM groups (inter-feature maps left out): hidden layers first,
    the output layer, then the stabiliser's weights when there is one more weight than biases."""
    stabiliser = (weights[-1], weight_exp) if len(weights) > len(biases) else None
    layers = [
        QuantizedLayer(w, b, weight_exp, bias_exp)
        for w, b in zip(weights[: len(biases)], biases, strict=True)
    ]
    return FixedPointArm.from_quantized(layers[:-1], layers[-1], stabiliser=stabiliser)


def _split_ifce(
    model: CoolChicModel, arm: dict[str, list[np.ndarray]], weight_exp: int, bias_exp: int
) -> tuple[list[np.ndarray], list[np.ndarray], list[QuantizedLayer]]:
    """The ARM groups' arrays without the inter-feature maps (named ``ifce.*`` in the torch
    model), and those maps as layers."""
    names = {
        kind: [name for name, _ in _declared_group(model, "arm", kind)]
        for kind in ("weight", "bias")
    }
    kept = {
        kind: [a for n, a in zip(names[kind], arm[kind], strict=True) if not n.startswith("ifce.")]
        for kind in ("weight", "bias")
    }
    maps = [
        [a for n, a in zip(names[kind], arm[kind], strict=True) if n.startswith("ifce.")]
        for kind in ("weight", "bias")
    ]
    layers = [QuantizedLayer(w, b, weight_exp, bias_exp) for w, b in zip(*maps, strict=True)]
    return kept["weight"], kept["bias"], layers


def torch_decode(data: bytes) -> tuple[np.ndarray, ...]:
    """The integer planes the torch model decodes (float64, upsampling and synthesis in torch)."""
    header, nn_bytes, latent_bytes = unpack_stream(data)
    config = model_config_from_header(header)
    exps = {group: coding.exp for group, coding in zip(NN_GROUPS, header.nn_coding, strict=True)}
    codes = {group: c.code for group, c in zip(NN_GROUPS, header.nn_coding, strict=True)}
    with torch.inference_mode():
        model = CoolChicModel(config, header.height, header.width).double()
        shapes: dict[str, dict[str, list[tuple[int, ...]]]] = {}
        for module, kind in NN_GROUPS:
            if parameters := _declared_group(model, module, kind):
                shapes.setdefault(module, {})[kind] = [tuple(p.shape) for _, p in parameters]
        q = decode_quantized(nn_bytes, shapes, codes)
        initial = model.upsampling.initial_values()
        for module, kinds in q.items():
            for kind, arrays in kinds.items():
                step = 2.0 ** exps[(module, kind)]
                for index, (name, _) in enumerate(_declared_group(model, module, kind)):
                    if module == "upsampling" and name in initial:
                        prediction = torch.round(initial[name].double() * step).long().numpy()
                        arrays[index] = arrays[index] + prediction
        weight_exp, bias_exp = exps[("arm", "weight")], exps[("arm", "bias")]
        arm_weights, arm_biases, ifce_layers = _split_ifce(model, q["arm"], weight_exp, bias_exp)
        arm = fixed_point_arm(arm_weights, arm_biases, weight_exp, bias_exp)
        grids = decode_latents(
            latent_bytes,
            header.coded_grid_shapes,
            arm,
            header.n_ctx_rowcol,
            zero_grids=header.coded_zero_flags,
            n_coarser=header.coarser_contexts,
            ifce=FixedPointIfce.from_quantized(ifce_layers) if ifce_layers else None,
            n_hyper=header.hyper_grids,
        )
        for module in ("upsampling", "synthesis"):
            for kind, arrays in q.get(module, {}).items():
                for (_, parameter), array in zip(
                    _declared_group(model, module, kind), arrays, strict=True
                ):
                    values = dequantize(array, exps[(module, kind)]).astype(np.float64)
                    parameter.copy_(torch.from_numpy(values))
        x_hat = model.decode_from_latents(
            [torch.from_numpy(g.astype(np.float64))[None, None] for g in grids]
        )
        return _torch_planes(x_hat, header)


def _torch_planes(x_hat: torch.Tensor, header: StreamHeader) -> tuple[np.ndarray, ...]:
    peak = float((1 << header.bit_depth) - 1)
    if header.frame_format == "yuv420":
        planes = [x_hat[0, 0], *F.avg_pool2d(x_hat[:, 1:3], kernel_size=2)[0]]
    else:
        planes = list(x_hat[0])
    dtype = np.uint8 if header.bit_depth <= 8 else np.uint16
    return tuple(torch.round(p.clamp(0.0, 1.0) * peak).numpy().astype(dtype) for p in planes)


# --------------------------------------------------------------------------------------------
# Streams


def _smooth_frame(fmt: str, bit_depth: int, width: int, height: int) -> Frame:
    """Gradients, an edge and a little noise: a picture the encoder can learn in 90 steps."""
    rng = np.random.default_rng(width * height + bit_depth)
    peak = (1 << bit_depth) - 1

    def plane(rows: int, cols: int, phase: float) -> np.ndarray:
        y, x = np.mgrid[0:rows, 0:cols] / max(rows, cols)
        value = 0.3 + 0.4 * np.sin(3 * x + 2 * y + phase) * (x > 0.3)
        value += 0.03 * rng.standard_normal((rows, cols))
        return np.clip(np.rint(np.clip(value, 0, 1) * peak), 0, peak).astype(np.uint16)

    chroma = (height // 2, width // 2) if fmt == "yuv420" else (height, width)
    planes = (plane(height, width, 0.0), plane(*chroma, 1.0), plane(*chroma, 2.0))
    return Frame.from_integer_planes(planes, fmt=fmt, bit_depth=bit_depth)  # type: ignore[arg-type]


ENCODES = {
    "small-yuv8": (SMALL_DECODER, "yuv420", 8, 24, 16),
    "small-yuv10": (SMALL_DECODER, "yuv420", 10, 16, 16),
    "small-rgb": (SMALL_DECODER, "rgb", 8, 20, 12),
    "v2-yuv8": (V2, "yuv420", 8, 16, 16),
    "v2-yuv10": (V2, "yuv420", 10, 24, 16),
    "v2-rgb": (V2, "rgb", 8, 18, 14),
    "ifce-hyper-yuv8": (
        dataclasses.replace(SMALL_DECODER, ifce_features=2, hyper_grids=3),
        "yuv420",
        8,
        24,
        16,
    ),
}


@pytest.fixture(scope="module", params=list(ENCODES))
def encoded(request: pytest.FixtureRequest) -> tuple[Frame, bytes, Frame]:
    """``(source, stream, the encoder's reconstruction)`` of a tiny ``instant`` encode."""
    config, fmt, bit_depth, width, height = ENCODES[request.param]
    frame = _smooth_frame(fmt, bit_depth, width, height)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny encodes gain nothing from more, and lose on a busy machine
    try:
        result = encode(frame, EncoderConfig(recipe="instant", model=config))
    finally:
        torch.set_num_threads(threads)
    return frame, result.bitstream, result.decoded


def synthetic_stream(
    config: ModelConfig, width: int, height: int, fmt: FrameFormat, bit_depth: int, seed: int = 0
) -> bytes:
    """A valid stream of any architecture without training: random latents and synthesis,
    upsampling filters near their start, an ARM that predicts μ = 0 and b = e²."""
    rng = np.random.default_rng(seed)
    exps = {
        ("arm", "weight"): 8,
        ("arm", "bias"): 8,
        ("upsampling", "weight"): 6,
        ("upsampling", "bias"): 0,
        ("synthesis", "weight"): 5,
        ("synthesis", "bias"): 5,
    }
    coded: dict[str, dict[str, list[np.ndarray]]] = {}
    planned = params.parameter_layout(config)
    for (module, kind), parameters in planned.items():
        if parameters:
            low, high = (0, 1) if module == "arm" else (-4, 5)
            arrays = [rng.integers(low, high, shape) for _, shape in parameters]
            coded.setdefault(module, {})[kind] = arrays
    output_bias = [name for name, _ in planned[("arm", "bias")]].index("output.bias")
    coded["arm"]["bias"][output_bias] = np.array([0, 6 << 8])
    coded["synthesis"]["bias"][-1] += 16  # centre the output near 0.5
    nn, codes = encode_quantized(coded)
    networks = params.QuantizedNetworks.decode(
        nn, config, [GroupCoding(exps[group], *codes[group]) for group in NN_GROUPS]
    )
    shapes = layout.coded_grid_shapes(height, width, config.n_grids, config.hyper_grids)
    latents = encode_latents(
        [rng.integers(-3, 4, s) for s in shapes],
        networks.arm(),
        config.n_ctx_rowcol,
        config.coarser_contexts,
        ifce=networks.ifce(),
        n_hyper=config.hyper_grids,
    )
    zero = latents.zero_grids
    header = header_for_model(
        config, width, height, fmt, bit_depth, exps=exps, codes=codes, zero_grids=zero
    )
    return pack_stream(header, nn, latents.data)


#: Architectures the encoder does not pick, to cover every path of the numpy passes.
UNUSUAL = {
    "k4-no-preconcat-yuv444-16b": (
        ModelConfig(
            n_grids=5,
            n_ctx_rowcol=1,
            arm_hidden=(),
            synthesis=parse_synthesis("16-3-linear-relu,X-3-linear-none"),
            upsampling_kernel=4,
            preconcat_kernel=0,
        ),
        "yuv444",
        16,
        13,
        9,
    ),
    "k16-kp15-residual-rgb": (
        ModelConfig(
            n_grids=6,
            n_ctx_rowcol=4,
            arm_hidden=(40, 40),
            synthesis=parse_synthesis(
                "6-1-linear-relu,6-1-residual-relu,6-5-residual-relu,X-3-linear-none"
            ),
            upsampling_kernel=16,
            preconcat_kernel=15,
            arm_stabiliser=True,
            synthesis_stabiliser=True,
        ),
        "rgb",
        8,
        37,
        11,
    ),
    "one-grid-yuv420-10b": (
        ModelConfig(
            n_grids=1,
            arm_hidden=(4,),
            synthesis=parse_synthesis("X-1-linear-none"),
            upsampling_kernel=6,
            preconcat_kernel=3,
        ),
        "yuv420",
        10,
        10,
        6,
    ),
    "ifce-hyper-stabiliser-yuv420": (
        ModelConfig(
            n_grids=6,
            n_ctx_rowcol=2,
            arm_hidden=(8,),
            synthesis=parse_synthesis("8-1-linear-relu,X-1-linear-none"),
            arm_stabiliser=True,
            ifce_features=3,
            hyper_grids=2,
        ),
        "yuv420",
        8,
        30,
        22,
    ),
    "ten-grids-1x1": (
        ModelConfig(n_grids=10, synthesis=parse_synthesis("5-1-linear-relu,X-1-linear-relu")),
        "rgb",
        8,
        1,
        1,
    ),
}


# --------------------------------------------------------------------------------------------
# No torch


def test_decoding_imports_no_torch(tmp_path: Path) -> None:
    stream = tmp_path / "small_16x8_25p_yuv420_8b.cool"
    stream.write_bytes(synthetic_stream(SMALL_DECODER, 16, 8, "yuv420", 8))
    script = textwrap.dedent(
        f"""
        import sys
        import coolchic.bitstream, coolchic.bitstream.latents, coolchic.decoder
        from coolchic.decoder import decode
        from coolchic.cli import main

        path, folder = {str(stream)!r}, {str(tmp_path)!r} + "/"
        frame = decode(open(path, "rb").read())
        assert (frame.width, frame.height) == (16, 8)
        assert main(["--threads", "1", "decode", path, "-o", folder]) == 0
        assert main(["info", path]) == 0
        loaded = sorted(name for name in sys.modules if name.split(".")[0] == "torch")
        assert not loaded, loaded
        print("torch-free")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("torch-free")
    assert (tmp_path / "small_16x8_25p_yuv420_8b.yuv").stat().st_size == 16 * 8 * 3 // 2


# --------------------------------------------------------------------------------------------
# The same decoder


def test_encodes_decode_to_the_torch_planes(encoded: tuple[Frame, bytes, Frame]) -> None:
    source, stream, reconstruction = encoded
    decoded = decode(stream)
    assert (decoded.width, decoded.height, decoded.format, decoded.bit_depth) == (
        source.width,
        source.height,
        source.format,
        source.bit_depth,
    )
    for new, old, encoder in zip(
        decoded.integer_planes(),
        torch_decode(stream),
        reconstruction.integer_planes(),
        strict=True,
    ):
        np.testing.assert_array_equal(new, old)
        np.testing.assert_array_equal(new, encoder)  # the encoder reports this decoder's output


@pytest.mark.parametrize("name", list(UNUSUAL))
def test_unusual_architectures_decode_to_the_torch_planes(name: str) -> None:
    config, fmt, bit_depth, width, height = UNUSUAL[name]
    stream = synthetic_stream(config, width, height, fmt, bit_depth, seed=len(name))
    decoded = decode_stream(stream)
    assert decoded.header.synthesis[0].kernel == config.synthesis[0].kernel
    planes = decoded.frame.integer_planes()
    reference = torch_decode(stream)
    peak = (1 << bit_depth) - 1
    assert any(((p > 0) & (p < peak)).any() for p in planes)  # not everything clamped
    for new, old in zip(planes, reference, strict=True):
        np.testing.assert_array_equal(new, old)


def test_rounding_and_chroma_pooling_are_torch_bit_for_bit() -> None:
    rng = np.random.default_rng(5)
    for fmt, bit_depth in (("yuv420", 8), ("yuv420", 10), ("rgb", 16)):
        header = StreamHeader(
            width=38,
            height=22,
            frame_format=fmt,  # type: ignore[arg-type]
            bit_depth=bit_depth,
            n_grids=1,
            n_ctx_rowcol=1,
            arm_hidden=(),
            upsampling_kernel=8,
            preconcat_kernel=0,
            synthesis=(SynthesisLayerField(3, 1, "linear", "none"),),
        )
        x_hat = rng.uniform(-0.2, 1.2, (3, 22, 38))
        frame = _to_frame(x_hat, header, None)
        reference = _torch_planes(torch.from_numpy(x_hat)[None], header)
        for new, old in zip(frame.integer_planes(), reference, strict=True):
            np.testing.assert_array_equal(new, old)


@pytest.mark.parametrize(
    ("n_grids", "kernel", "preconcat", "height", "width"),
    [(7, 8, 7, 37, 22), (4, 4, 0, 9, 16), (5, 16, 15, 23, 5), (3, 6, 1, 1, 1), (1, 8, 7, 4, 3)],
)
def test_upsampling_matches_the_torch_module(
    n_grids: int, kernel: int, preconcat: int, height: int, width: int
) -> None:
    rng = np.random.default_rng(n_grids * kernel)
    module = Upsampling(n_grids, kernel=kernel, preconcat_kernel=preconcat).double()
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(torch.from_numpy(0.1 * rng.standard_normal(tuple(parameter.shape))))
    grids = [
        rng.integers(-20, 21, s).astype(np.float64)
        for s in layout.grid_shapes(height, width, n_grids)
    ]
    with torch.no_grad():
        expected = module([torch.from_numpy(g)[None, None] for g in grids])[0].numpy()
    preconcat_half = module.preconcat_half
    found = upsample(
        grids,
        module.transposed_half.detach().numpy(),
        None if preconcat_half is None else preconcat_half.detach().numpy(),
        kernel=kernel,
    )
    assert found.shape == (n_grids, height, width)
    np.testing.assert_allclose(found, expected, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("stabiliser", [False, True])
@pytest.mark.parametrize(
    "text",
    [
        "8-1-linear-relu,3-1-linear-none",
        "40-1-linear-relu,3-1-linear-relu,3-3-residual-relu,3-3-residual-none",
        "7-1-residual-relu,9-5-linear-none,9-3-residual-relu,9-1-residual-relu,3-1-linear-none",
    ],
)
def test_synthesis_matches_the_torch_module(text: str, stabiliser: bool) -> None:
    rng = np.random.default_rng(len(text))
    layers = parse_synthesis(text)
    module = Synthesis(7, layers, stabiliser=stabiliser).double()
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.from_numpy(0.3 * rng.standard_normal(tuple(parameter.shape))))
    x = rng.standard_normal((7, 19, 26))
    with torch.no_grad():
        expected = module(torch.from_numpy(x)[None])[0].numpy()
    found = synthesize(
        x,
        layers,
        [conv.weight.detach().numpy() for conv in module.layers],
        [conv.bias.detach().numpy() for conv in module.layers],
        module.stabiliser.weight.detach().numpy() if module.stabiliser is not None else None,
    )
    np.testing.assert_allclose(found, expected, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------------
# One layout


CONFIGS = [V2, SMALL_DECODER, *(config for config, *_ in UNUSUAL.values())]


@pytest.mark.parametrize("config", CONFIGS, ids=range(len(CONFIGS)))
def test_the_layout_is_the_models_coding_order(config: ModelConfig) -> None:
    model = CoolChicModel(config, 12, 20)
    planned = params.parameter_layout(config)
    assert list(planned) == list(NN_GROUPS)
    for module, kind in NN_GROUPS:
        declared = [(name, tuple(p.shape)) for name, p in _declared_group(model, module, kind)]
        assert list(planned[(module, kind)]) == declared
        grouped = [(name, tuple(p.shape)) for name, p in group_parameters(model, module, kind)]
        assert grouped == declared
    coded = sum(len(specs) for specs in planned.values())
    trained = sum(
        1 for name in ("arm", "upsampling", "synthesis") for _ in model.module(name).parameters()
    )  # type: ignore[arg-type]
    assert coded == trained  # every network parameter is coded


def test_predictions_are_the_initial_filters_quantised() -> None:
    config = ModelConfig(n_grids=3, upsampling_kernel=10, preconcat_kernel=5)
    transposed, preconcat = params.predicted_integers(config, "upsampling", "weight", 8)
    bicubic = np.rint(np.array(layout.BICUBIC_HALF_KERNEL) * 256).astype(np.int64)
    np.testing.assert_array_equal(transposed, [[0, *bicubic]] * 2)
    np.testing.assert_array_equal(preconcat, [[0, 0, 256]] * 2)
    assert [p.shape for p in params.predicted_integers(config, "synthesis", "bias", 3)] == [
        (40,),
        (3,),
        (3,),
        (3,),
    ]
    assert not any(p.any() for p in params.predicted_integers(config, "arm", "weight", 5))


def test_shared_definitions_have_one_home() -> None:
    from coolchic.bitstream import latents as bitstream_latents
    from coolchic.model import arm, latents, upsampling

    assert arm.context_offsets is bitstream_latents.context_offsets is layout.context_offsets
    assert latents.grid_shapes is layout.grid_shapes
    assert upsampling.polyphase is layout.polyphase
    assert upsampling.BICUBIC_HALF_KERNEL is layout.BICUBIC_HALF_KERNEL
    header, _, _ = unpack_stream(synthetic_stream(SMALL_DECODER, 30, 18, "rgb", 8))
    assert list(header.grid_shapes) == layout.grid_shapes(18, 30, 7)
