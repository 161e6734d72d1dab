"""One encode job: input path → validate → read the first frame → encode → atomic outputs.

This is the unit the CLI's ``encode``, ``batch`` and the watch-folder daemon run. Outputs are
written atomically (temporary file in the same folder, fsync, rename), the report last, so the
presence of the report means the job is complete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coolchic.errors import InputError
from coolchic.io import Frame, read_frame, write_frame
from coolchic.io.files import atomic_write_bytes
from coolchic.model.config import ModelConfig, parse_arm, parse_synthesis
from coolchic.train.progress import ProgressCallback, ignore_progress
from coolchic.train.recipes import get_recipe

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncodeSettings:
    """User-level encode options; ``None`` architecture fields keep the automatic choice."""

    recipe: str = "fast"
    lmbda: float = 1e-3
    start_lr: float | None = None
    layers_synthesis: str | None = None
    layers_arm: str | None = None
    n_ctx_rowcol: int | None = None
    latent_n_grids: int | None = None
    seed: int = 0
    device: str = "auto"
    threads: int | None = None

    def __post_init__(self) -> None:
        get_recipe(self.recipe)
        if not self.lmbda > 0:
            raise ValueError(f"lmbda must be > 0, found {self.lmbda}")
        self.model_config(None)  # validates the architecture options early

    def model_config(self, base: ModelConfig | None) -> ModelConfig | None:
        """The architecture: ``base`` (or the default) with the options given here."""
        overrides: dict[str, Any] = {}
        if self.layers_synthesis is not None:
            overrides["synthesis"] = parse_synthesis(self.layers_synthesis)
        if self.layers_arm is not None:
            overrides["arm_hidden"] = parse_arm(self.layers_arm)
        if self.n_ctx_rowcol is not None:
            overrides["n_ctx_rowcol"] = self.n_ctx_rowcol
        if self.latent_n_grids is not None:
            overrides["n_grids"] = self.latent_n_grids
        if not overrides:
            return base
        return dataclasses.replace(base or ModelConfig(), **overrides)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_output_suffix(path: Path, frame_format: str) -> None:
    """A reconstruction is written as .png for RGB and .yuv for YUV frames."""
    expected = ".png" if frame_format == "rgb" else ".yuv"
    if path.suffix.lower() != expected:
        raise InputError(
            f"{path}: a {frame_format} frame is written as {expected}, not "
            f"{path.suffix or '(no extension)'}"
        )


def encode_file(
    input_path: str | Path,
    output_path: str | Path,
    settings: EncodeSettings,
    *,
    progress: ProgressCallback = ignore_progress,
    report_path: str | Path | None = None,
    decoded_path: str | Path | None = None,
) -> dict[str, Any]:
    """Encode the first frame of ``input_path`` into ``output_path``; return the report.

    Raises:
        InputError: the input is unusable, or an output path does not fit the frame.
        EncodingError: training failed with every seed.
    """
    from coolchic.codec import EncoderConfig, default_model_config, encode
    from coolchic.device import resolve_device, set_torch_threads

    input_path, output_path = Path(input_path), Path(output_path)
    frame: Frame = read_frame(input_path)
    if decoded_path is not None:
        check_output_suffix(Path(decoded_path), frame.format)
    threads = set_torch_threads(settings.threads)
    device = resolve_device(settings.device)
    config = EncoderConfig(
        lmbda=settings.lmbda,
        recipe=settings.recipe,
        model=settings.model_config(default_model_config(frame)),
        start_lr=settings.start_lr,
        seed=settings.seed,
        device=device,
    )
    logger.info(
        "encoding %s (%dx%d %s %d-bit) with recipe %s, lmbda %g on %s, %d threads",
        input_path,
        frame.width,
        frame.height,
        frame.format,
        frame.bit_depth,
        settings.recipe,
        settings.lmbda,
        device,
        threads,
    )
    encoded = encode(frame, config, progress)
    report: dict[str, Any] = {
        "input": str(input_path),
        "input_sha256": sha256_of(input_path),
        "output": str(output_path),
        **encoded.report,
    }
    atomic_write_bytes(output_path, encoded.bitstream)
    if decoded_path is not None:
        write_frame(decoded_path, encoded.decoded)
        report["decoded"] = str(decoded_path)
    if report_path is not None:
        atomic_write_bytes(report_path, (json.dumps(report, indent=2) + "\n").encode())
    return report
