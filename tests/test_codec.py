"""The codec end to end: round trips on tiny inputs, reports that match the files, recipes."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from coolchic.cli import main
from coolchic.codec import EncoderConfig, decode, encode
from coolchic.io import Frame, read_frame
from coolchic.model.config import ModelConfig
from coolchic.train.progress import ProgressEvent
from coolchic.train.recipes import RECIPES, get_recipe
from coolchic.train.trainer import Trainer
from tests.conftest import planes_bytes


def smooth_image(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A float RGB image in [0, 1] with gradients, an edge and a little texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    r = 0.2 + 0.6 * x + 0.05 * rng.standard_normal((height, width))
    g = 0.5 + 0.3 * np.sin(6 * y) * (x > 0.4)
    b = 0.8 - 0.5 * y
    return np.clip(np.stack([r, g, b], axis=-1), 0, 1)


def write_yuv420(path: Path, width: int, height: int, bit_depth: int) -> Path:
    rgb = smooth_image(width, height)
    peak = (1 << bit_depth) - 1
    luma = rgb @ np.array([0.299, 0.587, 0.114])
    cb = 0.5 + (rgb[..., 2] - luma) / 1.772
    cr = 0.5 + (rgb[..., 0] - luma) / 1.402

    def pool(p: np.ndarray) -> np.ndarray:
        return p.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3))

    dtype = np.uint8 if bit_depth == 8 else np.dtype("<u2")
    planes = tuple(
        np.clip(np.rint(p * peak), 0, peak).astype(dtype) for p in (luma, pool(cb), pool(cr))
    )
    path.write_bytes(planes_bytes(planes))
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("inputs")
    png = folder / "tiny.png"
    Image.fromarray(np.rint(smooth_image(48, 32) * 255).astype(np.uint8)).save(png)
    return {
        "png": png,
        "yuv8": write_yuv420(folder / "tiny_img_64x32_01p_yuv420_8b.yuv", 64, 32, 8),
        "yuv10": write_yuv420(folder / "tiny_img_64x32_24p_yuv420_10b.yuv", 64, 32, 10),
    }


@pytest.mark.parametrize("kind", ["png", "yuv8", "yuv10"])
def test_cli_round_trip_is_exact_across_processes(
    kind: str, inputs: dict[str, Path], tmp_path: Path
) -> None:
    source = inputs[kind]
    suffix = ".png" if kind == "png" else source.name[source.name.index("_64x32") :]
    stream = tmp_path / "out.cool"
    decoded = tmp_path / f"enc_decoded{suffix}"
    report_path = tmp_path / "report.json"
    assert (
        main(
            [
                "--threads",
                "2",
                "encode",
                str(source),
                "-o",
                str(stream),
                "--recipe",
                "instant",
                "--report",
                str(report_path),
                "--decoded",
                str(decoded),
            ]
        )
        == 0
    )
    report = json.loads(report_path.read_text())
    frame = read_frame(source)

    # Bits are the file's bits; bpp is per luma/RGB pixel.
    assert report["bits"] == 8 * stream.stat().st_size
    assert report["bpp"] == pytest.approx(report["bits"] / (frame.width * frame.height))
    assert report["nn_bits"] + report["latent_bits"] < report["bits"]

    # Decoding in another process, with another thread count, gives the same bytes.
    again = tmp_path / f"dec_decoded{suffix}"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "coolchic",
            "--threads",
            "1",
            "decode",
            str(stream),
            "-o",
            str(again),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert again.read_bytes() == decoded.read_bytes()

    # The report's PSNR is what `coolchic metrics` measures on the decoded file.
    metrics = subprocess.run(
        [sys.executable, "-m", "coolchic", "metrics", "--json", str(source), str(again)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    measured = json.loads(metrics.stdout)
    key = "psnr_rgb" if kind == "png" else "psnr_yuv"
    assert report[key] == pytest.approx(measured[key], abs=1e-4)
    assert report[key] > 20.0  # it learned the image, even in 90 iterations
    if kind != "png":
        assert report["psnr_y"] == pytest.approx(measured["psnr_y"], abs=1e-4)
        assert report["psnr_yuv_611"] == pytest.approx(measured["psnr_yuv_611"], abs=1e-4)


def test_api_round_trip_and_seeded_reproducibility(inputs: dict[str, Path]) -> None:
    frame = read_frame(inputs["yuv8"])
    config = EncoderConfig(recipe="instant", lmbda=2e-3, seed=3)
    first = encode(frame, config)
    second = encode(frame, config)
    assert first.bitstream == second.bitstream  # seeded CPU runs are reproducible
    back = decode(first.bitstream)
    assert isinstance(back, Frame)
    for a, b in zip(back.integer_planes(), first.decoded.integer_planes(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert back.source is None  # the stream stores no source name
    assert first.decoded.source == frame.source
    named = decode(first.bitstream, stem="tiny_img_64x32_01p_yuv420_8b")
    assert named.source == frame.source
    renamed = decode(first.bitstream, stem="holiday")
    assert renamed.source is not None and renamed.source.filename == frame.source.filename.replace(
        "tiny_img", "holiday"
    )
    other = encode(frame, EncoderConfig(recipe="instant", lmbda=2e-3, seed=4))
    assert other.bitstream != first.bitstream


def test_many_chunks_on_two_threads_round_trip_and_reproduce(
    inputs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large frames split the ARM and the synthesis into chunks on worker threads: the encode
    is still reproducible and the decoder (in inference mode, on workers too) bit-exact."""
    from coolchic.model import pointwise

    monkeypatch.setattr(pointwise, "CHUNK_COLUMNS", 96)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        frame = read_frame(inputs["yuv8"])
        config = EncoderConfig(recipe="instant", lmbda=2e-3, seed=3)
        first = encode(frame, config)
        assert encode(frame, config).bitstream == first.bitstream
        back = decode(first.bitstream)
        for a, b in zip(back.integer_planes(), first.decoded.integer_planes(), strict=True):
            np.testing.assert_array_equal(a, b)
    finally:
        torch.set_num_threads(before)


def test_the_thread_count_does_not_change_the_bitstream(
    inputs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every sum over pixels is cut into chunks that do not depend on the threads: one thread
    and three write the same bytes (many ARM and synthesis chunks, so that they spread)."""
    from coolchic.model import pointwise

    monkeypatch.setattr(pointwise, "CHUNK_COLUMNS", 96)
    before = torch.get_num_threads()
    frame = read_frame(inputs["yuv8"])
    config = EncoderConfig(recipe="instant", lmbda=2e-3, seed=5)
    try:
        torch.set_num_threads(1)
        one = encode(frame, config).bitstream
        torch.set_num_threads(3)
        three = encode(frame, config).bitstream
    finally:
        torch.set_num_threads(before)
    assert one == three


def test_higher_lambda_gives_a_smaller_file(inputs: dict[str, Path]) -> None:
    frame = read_frame(inputs["yuv8"])
    small = encode(frame, EncoderConfig(recipe="instant", lmbda=2e-2))
    large = encode(frame, EncoderConfig(recipe="instant", lmbda=1e-4))
    assert small.report["latent_bits"] < large.report["latent_bits"]


def test_custom_architecture_is_carried_by_the_stream(inputs: dict[str, Path]) -> None:
    frame = read_frame(inputs["png"])
    model = ModelConfig(
        n_grids=5,
        n_ctx_rowcol=2,
        arm_hidden=(12,),
        synthesis=ModelConfig().synthesis[:1] + ModelConfig().synthesis[1:2],
    )
    encoded = encode(frame, EncoderConfig(recipe="instant", model=model))
    arch = encoded.report["architecture"]
    assert (arch["n_grids"], arch["n_ctx_rowcol"], arch["layers_arm"]) == (5, 2, "12")
    assert encoded.report["mac_per_pixel"] < 600
    decoded = decode(encoded.bitstream)
    assert (decoded.width, decoded.height, decoded.format) == (48, 32, "rgb")


class _Stop(Exception):
    pass


@pytest.mark.parametrize("name", list(RECIPES))
def test_every_recipe_runs(name: str, inputs: dict[str, Path]) -> None:
    """Each recipe starts and trains (stopped at its first validation to keep tests short)."""
    from coolchic.model.coolchic import CoolChicModel
    from coolchic.train.loss import Target

    frame = read_frame(inputs["yuv8"])
    target = Target.from_frame(frame)
    events: list[ProgressEvent] = []

    def stop_at_first_validation(event: ProgressEvent) -> None:
        events.append(event)
        if event.kind == "progress":
            raise _Stop

    trainer = Trainer(
        target=target,
        lmbda=1e-3,
        recipe=get_recipe(name),
        model_factory=lambda _seed: CoolChicModel(ModelConfig(), frame.height, frame.width),
        progress=stop_at_first_validation,
    )
    with pytest.raises(_Stop):
        trainer.run()
    progress = events[-1]
    assert progress.iteration == get_recipe(name).warmup.stages[0][1]
    assert progress.total_iterations == get_recipe(name).iterations
    assert progress.loss is not None and math.isfinite(progress.loss)
    assert progress.eta_s is not None and progress.iterations_per_s is not None


def test_non_finite_loss_restores_and_retries(inputs: dict[str, Path]) -> None:
    """A model that produces NaN is recovered from; one that always does ends in an error."""
    from coolchic.errors import EncodingError
    from coolchic.model.coolchic import CoolChicModel
    from coolchic.train.loss import Target
    from coolchic.train.trainer import TrainingDiverged

    frame = read_frame(inputs["yuv8"])
    target = Target.from_frame(frame)
    calls = {"n": 0}

    class Flaky(CoolChicModel):
        def forward(self, **kwargs):  # type: ignore[no-untyped-def]
            output = super().forward(**kwargs)
            calls["n"] += 1
            if kwargs.get("quantizer") is not None and 30 <= calls["n"] < 33:
                poisoned = output.x_hat * float("nan")
                return type(output)(x_hat=poisoned, rate_bits=output.rate_bits)
            return output

    events: list[ProgressEvent] = []
    trainer = Trainer(
        target=target,
        lmbda=1e-3,
        recipe=get_recipe("instant"),
        model_factory=lambda _seed: Flaky(ModelConfig(), frame.height, frame.width),
        progress=events.append,
    )
    _, best = trainer.run()
    assert math.isfinite(best.loss)
    assert any(e.kind == "warning" and "non-finite" in e.message for e in events)

    class Broken(CoolChicModel):
        def forward(self, **kwargs):  # type: ignore[no-untyped-def]
            output = super().forward(**kwargs)
            return type(output)(x_hat=output.x_hat * float("nan"), rate_bits=output.rate_bits)

    broken = Trainer(
        target=target,
        lmbda=1e-3,
        recipe=get_recipe("instant"),
        model_factory=lambda _seed: Broken(ModelConfig(), frame.height, frame.width),
    )
    with pytest.raises(TrainingDiverged):
        broken.run()
    assert issubclass(TrainingDiverged, EncodingError)


def test_seeded_encodes_match_across_processes(inputs: dict[str, Path], tmp_path: Path) -> None:
    """Same seed and thread count in two fresh processes (different hash seeds): same bytes."""
    import os

    streams = []
    for hash_seed in ("1", "2"):
        out = tmp_path / f"seed{hash_seed}.cool"
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "coolchic",
                "--threads",
                "1",
                "encode",
                str(inputs["yuv8"]),
                "-o",
                str(out),
                "--recipe",
                "instant",
                "--seed",
                "5",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
        )
        assert result.returncode == 0, result.stderr
        streams.append(out.read_bytes())
    assert streams[0] == streams[1]


@pytest.mark.parametrize(
    "width, height",
    [(192, 128), (416, 240), (450, 300), (512, 512), (768, 512), (1152, 768), (1920, 1080)],
)
@pytest.mark.parametrize("lmbda", [4e-4, 1e-3, 4e-3, 1e-2])
def test_which_recipes_add_the_inter_feature_context_to_the_small_decoder(
    width: int, height: int, lmbda: float
) -> None:
    """Every recipe gets the small decoder, whatever the size; ``medium`` and up add IFCE
    with hyper-latents, ``fast`` too from 90,000 pixels on (at low rates from 200,000), the
    other quick recipes never. ``fast`` widens the synthesis to 16 on mid-size frames (from
    120,000 pixels below λ = 6e-3, from 200,000 above), and at high rates its ARM too."""
    from coolchic.codec import (
        QUICK_RECIPES,
        SMALL_DECODER,
        SMALL_DECODER_CONTEXT_FOR_LONG_RECIPES,
        WIDE_ARM_HIDDEN,
        WIDE_SYNTHESIS,
        default_model_config,
    )
    from coolchic.train.recipes import RECIPES

    pixels = width * height
    fast_has_context = pixels >= 200_000 or (pixels >= 90_000 and lmbda < 6e-3)
    fast_arm_is_wide = 120_000 <= pixels < 600_000 and lmbda < 6e-4
    fast_is_wide = 200_000 <= pixels < 600_000 or (120_000 <= pixels < 600_000 and lmbda < 6e-3)
    for recipe in RECIPES:
        config = default_model_config(lmbda, recipe, pixels=pixels)
        wide = recipe == "fast" and fast_is_wide
        wide_arm = recipe == "fast" and fast_arm_is_wide
        assert (config.arm_hidden, config.synthesis) == (
            WIDE_ARM_HIDDEN if wide_arm else SMALL_DECODER.arm_hidden,
            WIDE_SYNTHESIS if wide else SMALL_DECODER.synthesis,
        ), recipe
        context = {"ifce_features": config.ifce_features, "hyper_grids": config.hyper_grids}
        plain = recipe in QUICK_RECIPES and not (recipe == "fast" and fast_has_context)
        if plain:
            assert context == {"ifce_features": 0, "hyper_grids": 0}, recipe
        else:
            assert context == SMALL_DECODER_CONTEXT_FOR_LONG_RECIPES, recipe
    high_rate = default_model_config(2e-4, "medium", pixels=pixels)
    assert (high_rate.n_ctx_rowcol, high_rate.ifce_features) == (3, 2)
    fast = default_model_config(1e-3, "fast", pixels=pixels).ifce_features
    assert fast == (2 if (width, height) != (192, 128) else 0)


@pytest.mark.parametrize("lmbda", [2e-4, 1e-3, 1e-2])
def test_every_default_architecture_is_a_header_preset(lmbda: float) -> None:
    """The format's architecture presets are the encoder's defaults: a default stream spends 3
    to 5 bits on its decoder's architecture instead of about 50."""
    from coolchic.bitstream.constants import NN_GROUPS
    from coolchic.bitstream.header import header_for_model
    from coolchic.bitstream.header_fields import ARCHITECTURE_PRESETS, HEADER_FIELDS, Preset
    from coolchic.codec import default_model_config

    (preset,) = (entry for entry in HEADER_FIELDS if isinstance(entry, Preset))
    codes = set()
    for pixels in (192 * 128, 416 * 240, 450 * 300, 512 * 512, 1920 * 1080):
        for recipe in RECIPES:
            config = default_model_config(lmbda, recipe, pixels=pixels)
            exps = dict.fromkeys(NN_GROUPS, 8)
            header = header_for_model(config, 192, 128, "yuv420", 8, exps=exps, codes={})
            codes.add(preset.code(header))
    assert 0 not in codes and codes <= set(range(1, len(ARCHITECTURE_PRESETS) + 1))


def test_default_architecture_depends_on_lambda() -> None:
    """High rates get the 24-value ARM context and a larger latent gain; low rates stay small."""
    from coolchic.codec import WIDE_CONTEXT_LMBDA, default_model_config

    high = default_model_config(WIDE_CONTEXT_LMBDA / 2, pixels=192 * 128)
    low = default_model_config(WIDE_CONTEXT_LMBDA * 2, pixels=192 * 128)
    assert (high.n_ctx_rowcol, low.n_ctx_rowcol) == (3, 2)
    assert high.arm_hidden == low.arm_hidden and high.synthesis == low.synthesis
    assert high.latent_gain >= low.latent_gain
