"""Running one job: read the input, encode its first frame, write the outputs atomically.

:func:`encode_file` is what ``coolchic encode`` runs; :func:`run_job` wraps it for ``batch`` and
the daemon and never raises for a bad job: it returns a :class:`~coolchic.jobs.types.JobResult`
whose error is classified. The ``.cool`` is written before the JSON report, so the report's
presence means the job is complete; :func:`up_to_date_report` relies on it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coolchic.errors import CoolchicError, InputError
from coolchic.io import (
    Frame,
    check_output_suffix,
    inspect_yuv,
    is_png_path,
    is_yuv_path,
    parse_yuv_name,
    read_frame,
    write_frame,
)
from coolchic.io.files import atomic_write_bytes, output_folder_lock
from coolchic.jobs.settings import FINGERPRINT_FIELDS, EncodeSettings
from coolchic.jobs.types import JobRequest, JobResult, classify_error, describe_error
from coolchic.resources import check_fits, estimate_encode_bytes, memory_budget
from coolchic.train.progress import ProgressCallback, ignore_progress

if TYPE_CHECKING:
    from coolchic.codec import Encoded

#: One logger name for the whole package, as before it was split (users filter logs by it).
logger = logging.getLogger("coolchic.jobs")


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def encode_file(
    input_path: str | Path,
    output_path: str | Path,
    settings: EncodeSettings,
    *,
    progress: ProgressCallback = ignore_progress,
    report_path: str | Path | None = None,
    decoded_path: str | Path | None = None,
    checkpoint_path: str | Path | None = None,
) -> dict[str, Any]:
    """Encode the first frame of ``input_path`` into ``output_path``; return the report.

    With ``checkpoint_path`` the training is checkpointed there and resumed from there (see
    :func:`coolchic.codec.encode`); the checkpoint is deleted once the outputs are written.

    Besides the codec's report, the report holds the input's sha256 and size, the settings and
    their fingerprint, and the size of the stream written: what :func:`up_to_date_report`
    compares to decide that an output need not be made again.

    Raises:
        InputError: the input is unusable, or an output path does not fit the frame.
        EncodingError: training failed with every seed.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    frame, identity = read_input(input_path)
    if decoded_path is not None:
        check_output_suffix(Path(decoded_path), frame.format)
    encoded = encode_frame(
        frame,
        settings,
        progress=progress,
        label=str(input_path),
        checkpoint_path=checkpoint_path,
    )
    report = job_report(identity, output_path, encoded.bitstream, encoded.report, settings)
    if decoded_path is not None:
        write_frame(decoded_path, encoded.decoded)
        report["decoded"] = str(decoded_path)
    write_outputs(output_path, encoded.bitstream, report_path, report)
    if checkpoint_path is not None:
        with contextlib.suppress(FileNotFoundError):
            Path(checkpoint_path).unlink()
    return report


def write_outputs(
    cool_path: Path, bitstream: bytes, report_path: str | Path | None, report: dict[str, Any]
) -> None:
    """Write a stream and then its report, each atomically, under the folder's lock.

    The report comes last, so its presence means the job is complete; the lock keeps another
    process that writes the same names from interleaving its pair with this one.
    """
    with output_folder_lock(cool_path.parent):
        atomic_write_bytes(cool_path, bitstream)
        if report_path is not None:
            write_json_atomic(report_path, report)


@dataclass(frozen=True)
class InputIdentity:
    """What identifies an input in its report: the path, its content's sha256, its size."""

    path: Path
    sha256: str
    size: int


def read_input(path: Path) -> tuple[Frame, InputIdentity]:
    """Read the first frame of ``path`` and fingerprint the file.

    Raises:
        InputError: the input is unusable.
    """
    frame = read_frame(path)
    return frame, InputIdentity(path, sha256_of(path), path.stat().st_size)


def encode_frame(
    frame: Frame,
    settings: EncodeSettings,
    *,
    progress: ProgressCallback = ignore_progress,
    label: str = "frame",
    checkpoint_path: str | Path | None = None,
) -> Encoded:
    """Encode a frame with ``settings`` on this machine: torch threads and device set here.

    Raises:
        EncodingError: training failed with every seed.
    """
    from coolchic.codec import EncoderConfig, default_model_config, encode, encode_to_target
    from coolchic.device import resolve_device, set_torch_threads

    lmbda = settings.first_lmbda
    model = settings.model_config(
        default_model_config(lmbda, settings.recipe, pixels=frame.width * frame.height)
    )
    assert model is not None
    if device_is_cpu(settings.device):
        check_fits(frame.width, frame.height, model, memory_budget(settings.memory_limit))
    threads = set_torch_threads(settings.threads)
    device = resolve_device(settings.device)
    config = EncoderConfig(
        lmbda=lmbda,
        recipe=settings.recipe,
        model=model,
        start_lr=settings.start_lr,
        seed=settings.seed,
        iterations_scale=settings.iterations_scale,
        device=device,
    )
    aim = f"target {settings.target.describe()}" if settings.target else f"lmbda {lmbda:g}"
    logger.info(
        "encoding %s (%dx%d %s %d-bit) with recipe %s, %s on %s, %d threads",
        label,
        frame.width,
        frame.height,
        frame.format,
        frame.bit_depth,
        settings.recipe,
        aim,
        device,
        threads,
    )
    if settings.target is not None:
        return encode_to_target(
            frame, config, settings.target, progress, checkpoint_path=checkpoint_path
        )
    return encode(frame, config, progress, checkpoint_path=checkpoint_path)


def device_is_cpu(device: str | None) -> bool:
    """Whether the training runs in this machine's RAM (the memory budget applies)."""
    return device in (None, "cpu") or (device == "auto" and not _accelerator_present())


def _accelerator_present() -> bool:
    import torch

    return torch.cuda.is_available() or torch.backends.mps.is_available()


def frame_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of an input without reading its samples: the YUV name, a PNG header."""
    if is_yuv_path(path):
        try:
            fields = parse_yuv_name(path)
        except InputError:
            return None
        return fields.width, fields.height
    try:
        from PIL import Image

        with Image.open(path) as image:
            return image.size
    except Exception:  # not an image we can read: the encode says why
        return None


def job_memory_estimate(path: Path, settings: EncodeSettings) -> int | None:
    """Predicted peak memory of encoding ``path`` with ``settings`` (None: size unknown)."""
    from coolchic.codec import default_model_config

    size = frame_size(path)
    if size is None or not device_is_cpu(settings.device):
        return None
    base = default_model_config(settings.first_lmbda, settings.recipe, pixels=size[0] * size[1])
    model = settings.model_config(base)
    assert model is not None
    return estimate_encode_bytes(*size, model)


def job_report(
    source: InputIdentity,
    output_path: Path,
    bitstream: bytes,
    codec_report: dict[str, Any],
    settings: EncodeSettings,
) -> dict[str, Any]:
    """The report of a job: input identity, output size, the codec's report, the settings."""
    return {
        "input": str(source.path),
        "input_sha256": source.sha256,
        "input_bytes": source.size,
        "output": str(output_path),
        "output_bytes": len(bitstream),
        **codec_report,
        "settings": settings_record(settings),
        "settings_fingerprint": settings.fingerprint(),
    }


def settings_record(settings: EncodeSettings) -> dict[str, Any]:
    """The settings that decide the bytes, as a report holds them (a target replaces λ)."""
    record: dict[str, Any] = {name: getattr(settings, name) for name in FINGERPRINT_FIELDS}
    if settings.target is not None:
        record["lmbda"] = None
        record["target"] = {"metric": settings.target.metric, "value": settings.target.value}
    return record


def write_json_atomic(path: str | Path, payload: dict[str, Any]) -> None:
    """Write a JSON document atomically (see :func:`coolchic.io.files.atomic_write_bytes`)."""
    atomic_write_bytes(path, (json.dumps(payload, indent=2, default=str) + "\n").encode())


def precheck_input(path: Path) -> None:
    """The checks that need neither torch nor the samples: type, YUV name and size.

    Raises:
        InputError: what :func:`coolchic.io.read_frame` would raise for the same reason.
    """
    if is_yuv_path(path):
        inspect_yuv(path)
    elif not is_png_path(path):
        read_frame(path)  # raises the unsupported-type error


def up_to_date_report(
    input_path: Path, cool_path: Path, report_path: Path, settings: EncodeSettings
) -> dict[str, Any] | None:
    """The existing report if the outputs are up to date, else ``None``.

    Up to date means: the report parses, was made with the same settings fingerprint (options,
    package version) from an input with the same size and sha256, and the ``.cool`` next to it
    has the size the report gives.
    """
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
        input_bytes = input_path.stat().st_size
        cool_bytes = cool_path.stat().st_size
    except (OSError, ValueError):
        return None
    if not isinstance(report, dict):
        return None
    if (
        report.get("settings_fingerprint") != settings.fingerprint()
        or report.get("output_bytes") != cool_bytes
        or report.get("input_bytes") != input_bytes
    ):
        return None
    try:
        same_content = report.get("input_sha256") == sha256_of(input_path)
    except OSError:
        return None
    return report if same_content else None


def run_job(request: JobRequest, *, progress: ProgressCallback = ignore_progress) -> JobResult:
    """Run one job; a failure comes back as a classified result, never as an exception.

    ``KeyboardInterrupt`` and ``SystemExit`` still propagate.
    """
    started = time.perf_counter()
    try:
        if request.skip_if_up_to_date:
            report = up_to_date_report(
                request.input_path, request.cool_path, request.report_path, request.settings
            )
            if report is not None:
                return JobResult(request.input_path, "skipped", report=report)
        request.cool_path.parent.mkdir(parents=True, exist_ok=True)
        report = encode_file(
            request.input_path,
            request.cool_path,
            request.settings,
            progress=progress,
            report_path=request.report_path,
            checkpoint_path=request.checkpoint_path,
        )
    except Exception as error:
        kind = classify_error(error)
        logger.debug("%s: %s error", request.input_path, kind, exc_info=True)
        return JobResult(
            request.input_path,
            "failed",
            error=describe_error(error),
            error_kind=kind,
            detail=None if isinstance(error, CoolchicError) else traceback.format_exc(),
            seconds=time.perf_counter() - started,
        )
    return JobResult(
        request.input_path, "done", report=report, seconds=time.perf_counter() - started
    )
