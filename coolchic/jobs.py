"""Jobs: one input path → validate → read the first frame → encode → atomic outputs + report.

This is the unit that ``coolchic encode``, ``coolchic batch`` and the watch-folder daemon run.

- :class:`EncodeSettings` holds the user-level options; its :meth:`~EncodeSettings.fingerprint`
  identifies every option that changes the output, so an up-to-date output can be recognised.
- :func:`encode_file` encodes in this process and writes ``.cool`` then the JSON report, each
  atomically (temporary file in the same folder, fsync, rename); the report comes last, so its
  presence means the job is complete.
- :func:`find_inputs` and :func:`output_paths` decide which files are inputs and where their
  outputs go, with the safety rules of the batch processor and the daemon (regular files only,
  no symlink out of the folder, no output outside the output folder).
- :func:`run_job` runs one :class:`JobRequest` and never raises for a bad job: it returns a
  :class:`JobResult` whose error is classified as permanent (the input is at fault) or transient
  (the machine is: I/O, memory, a lost worker).
- :class:`EncodeTask` and :func:`run_encode_task` are the stateless form of a job for remote
  workers (frame samples in, stream and report out); :func:`finish_remote_job` writes their
  outputs on the coordinator.
- :func:`run_batch` drives an executor (:mod:`coolchic.executors`) over a list of inputs for
  ``coolchic batch``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import stat
import time
import traceback
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, Literal, NewType, Protocol

from coolchic import __version__
from coolchic.bitstream.constants import FORMAT_VERSION
from coolchic.errors import BitstreamError, CoolchicError, EncodingError, InputError
from coolchic.io import (
    Frame,
    FrameSamples,
    check_output_suffix,
    inspect_yuv,
    is_png_path,
    is_yuv_path,
    parse_yuv_name,
    read_frame,
    write_frame,
)
from coolchic.io.files import atomic_write_bytes, output_folder_lock
from coolchic.model.config import ModelConfig, parse_arm, parse_synthesis
from coolchic.resources import (
    MemoryGate,
    ResourceError,
    check_fits,
    estimate_encode_bytes,
    memory_budget,
    refuse_if_too_big,
)
from coolchic.train.progress import ProgressCallback, ProgressEvent, ignore_progress
from coolchic.train.recipes import get_recipe

if TYPE_CHECKING:
    from coolchic.codec import Encoded
    from coolchic.executors.base import Executor

logger = logging.getLogger(__name__)

ErrorKind = Literal["permanent", "transient"]
JobStatus = Literal["done", "skipped", "failed"]
JobId = NewType("JobId", int)

#: The settings that change the bytes of an encode (threads and device only change its speed).
FINGERPRINT_FIELDS = (
    "recipe",
    "lmbda",
    "start_lr",
    "layers_synthesis",
    "layers_arm",
    "n_ctx_rowcol",
    "latent_n_grids",
    "seed",
)


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
    #: Memory the jobs of this process may use together (``--memory-limit``); None: the
    #: machine's (see :mod:`coolchic.resources`). Changes when a job runs, never its bytes.
    memory_limit: int | None = None

    def __post_init__(self) -> None:
        get_recipe(self.recipe)
        if not self.lmbda > 0:
            raise ValueError(f"lmbda must be > 0, found {self.lmbda}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be at least 1, found {self.threads}")
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

    def fingerprint(self) -> str:
        """A short hash of every option that changes the output, and of the package version.

        The bitstream format version is hashed too: a stream of another format is not up to
        date, since this decoder cannot read it.
        """
        payload = {name: getattr(self, name) for name in FINGERPRINT_FIELDS}
        payload["version"] = __version__
        payload["format_version"] = FORMAT_VERSION
        text = json.dumps(payload, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask: taskset, cgroup cpusets), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def default_threads(jobs: int) -> int:
    """torch threads per job when ``jobs`` run at once: the usable CPUs shared out, at least 1."""
    return max(1, usable_cpus() // max(1, jobs))


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
    from coolchic.codec import EncoderConfig, default_model_config, encode
    from coolchic.device import resolve_device, set_torch_threads

    model = settings.model_config(default_model_config(frame, settings.lmbda, settings.recipe))
    assert model is not None
    if device_is_cpu(settings.device):
        check_fits(frame.width, frame.height, model, memory_budget(settings.memory_limit))
    threads = set_torch_threads(settings.threads)
    device = resolve_device(settings.device)
    config = EncoderConfig(
        lmbda=settings.lmbda,
        recipe=settings.recipe,
        model=model,
        start_lr=settings.start_lr,
        seed=settings.seed,
        device=device,
    )
    logger.info(
        "encoding %s (%dx%d %s %d-bit) with recipe %s, lmbda %g on %s, %d threads",
        label,
        frame.width,
        frame.height,
        frame.format,
        frame.bit_depth,
        settings.recipe,
        settings.lmbda,
        device,
        threads,
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
    from coolchic.codec import default_model_config_for_size

    size = frame_size(path)
    if size is None or not device_is_cpu(settings.device):
        return None
    base = default_model_config_for_size(*size, settings.lmbda, settings.recipe)
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
        "settings": {name: getattr(settings, name) for name in FINGERPRINT_FIELDS},
        "settings_fingerprint": settings.fingerprint(),
    }


def write_json_atomic(path: str | Path, payload: dict[str, Any]) -> None:
    """Write a JSON document atomically (see :func:`coolchic.io.files.atomic_write_bytes`)."""
    atomic_write_bytes(path, (json.dumps(payload, indent=2, default=str) + "\n").encode())


# --------------------------------------------------------------------------------------------
# Inputs and outputs

#: Suffixes of files still being written by common tools (rsync, browsers, our own writers).
PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".download", ".filepart")
#: NAS, sync-tool and desktop litter that is never an input.
IGNORED_NAMES = frozenset(
    {"@eaDir", "#recycle", "$RECYCLE.BIN", "Thumbs.db", "desktop.ini", "__MACOSX"}
)


def is_ignored_name(name: str) -> bool:
    """Hidden files, editor backups, partial downloads and NAS litter are never inputs."""
    return (
        name.startswith((".", "~"))
        or name.endswith("~")
        or name in IGNORED_NAMES
        or name.lower().endswith(PARTIAL_SUFFIXES)
    )


def is_input_name(name: str, *, include_png: bool) -> bool:
    """Whether a file name is an input: ``*.yuv`` (any case), and ``*.png`` when asked."""
    if is_ignored_name(name):
        return False
    suffix = PurePath(name).suffix.lower()
    return suffix == ".yuv" or (include_png and suffix == ".png")


@dataclass(frozen=True)
class InputFile:
    """An input found under ``root``; ``refused`` says why it must not be read, if so."""

    path: Path
    root: Path
    relative: PurePath
    refused: str | None = None


def refusal_reason(path: Path, root: Path) -> str | None:
    """Why ``path`` (found under ``root``) must not be read, or ``None`` if it may be.

    Only regular files qualify; a symbolic link is followed only when its target lies under
    ``root`` too, so a link cannot make the tool read (and then move or delete) a file elsewhere.
    """
    try:
        target = path.resolve(strict=True)
        mode = target.stat().st_mode
    except (OSError, RuntimeError) as error:
        return f"cannot resolve the path ({getattr(error, 'strerror', None) or error})"
    if not stat.S_ISREG(mode):
        return "not a regular file"
    if path.is_symlink() and not target.is_relative_to(root.resolve()):
        return f"symbolic link to {target}, outside {root}"
    return None


def find_inputs(
    root: str | Path,
    *,
    recursive: bool = False,
    include_png: bool = False,
    exclude: Iterable[str | Path] = (),
) -> list[InputFile]:
    """The input files in folder ``root``, sorted by relative path.

    Hidden and partial files are skipped, and so are, when recursing, hidden folders, folders
    reached through a symbolic link and the ``exclude`` folders (the output folder, ``done/``).
    A link to a file outside ``root`` is listed with a ``refused`` reason rather than dropped,
    so that the caller can report it.
    """
    root = Path(root)
    resolved_root = root.resolve()
    excluded = {Path(p).resolve() for p in exclude}
    found: list[InputFile] = []
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError as error:
            logger.warning("cannot list %s: %s", folder, error.strerror or error)
            continue
        for entry in entries:
            path = Path(entry.path)
            named_like_input = is_input_name(entry.name, include_png=include_png)
            if entry.is_dir(follow_symlinks=False):
                descend = recursive and not is_ignored_name(entry.name)
                if descend and path.resolve() not in excluded:
                    pending.append(path)
                elif named_like_input and not recursive and path.resolve() not in excluded:
                    relative = path.relative_to(root)
                    found.append(InputFile(path, resolved_root, relative, "a folder, not a file"))
                continue
            if not named_like_input:
                continue
            relative = path.relative_to(root)
            if not entry.is_symlink() and not entry.is_file(follow_symlinks=False):
                # FIFOs, sockets and devices are listed, never opened (a FIFO would block)
                found.append(InputFile(path, resolved_root, relative, "not a regular file"))
                continue
            found.append(InputFile(path, resolved_root, relative, refusal_reason(path, root)))
    return sorted(found, key=lambda item: item.relative.as_posix())


#: Longest file name most file systems take (ext4, XFS, APFS, NTFS in UTF-16 units).
NAME_MAX_BYTES = 255
#: ``.<stem>.cool.XXXXXXXX.tmp``, the temporary name of an output, must fit in NAME_MAX_BYTES.
MAX_OUTPUT_STEM_BYTES = NAME_MAX_BYTES - len("..cool.XXXXXXXX.tmp")


def output_paths(relative: PurePath, output_root: str | Path) -> tuple[Path, Path]:
    """``<output_root>/<relative folder>/<stem>.cool`` and ``.json`` for an input.

    Raises:
        InputError: the name would put an output outside ``output_root`` (``..``, an absolute
            path, or a folder in the output tree that links elsewhere).
    """
    relative = PurePath(relative)
    stem = relative.stem
    if relative.is_absolute() or ".." in relative.parts or not stem or stem.startswith("."):
        raise InputError(f"{relative}: cannot name an output after this input")
    stem_bytes = len(os.fsencode(stem))
    if stem_bytes > MAX_OUTPUT_STEM_BYTES:
        raise InputError(
            f"{relative.name}: the name is too long to name its outputs after it ({stem_bytes} "
            f"bytes before the extension, at most {MAX_OUTPUT_STEM_BYTES}); rename the file"
        )
    output_root = Path(output_root)
    folder = output_root.joinpath(*relative.parts[:-1])
    cool = folder / f"{stem}.cool"
    report = folder / f"{stem}.json"
    resolved_root = output_root.resolve()
    for path in (cool, report):
        if not path.resolve().is_relative_to(resolved_root):
            raise InputError(f"{relative}: its output {path} would lie outside {output_root}")
    return cool, report


#: The hidden folder of ``batch``'s checkpoints, in its output folder.
CHECKPOINT_DIR_NAME = ".coolchic-checkpoints"


def checkpoint_path(output_root: str | Path, relative: PurePath) -> Path:
    """Where ``batch`` checkpoints the encode of an input: hidden, beside its outputs.

    Named after the input's relative path, so that a re-run of the same batch finds it; the
    checkpoint's own key decides whether it may be resumed.
    """
    name = hashlib.sha256(os.fsencode(PurePath(relative).as_posix())).hexdigest()[:24]
    return Path(output_root) / CHECKPOINT_DIR_NAME / f"{name}.pt"


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


# --------------------------------------------------------------------------------------------
# Running one job


@dataclass(frozen=True)
class JobRequest:
    """What a worker needs to run a job; plain data, so it crosses process boundaries."""

    input_path: Path
    cool_path: Path
    report_path: Path
    settings: EncodeSettings
    skip_if_up_to_date: bool = True
    #: Where the training state is checkpointed, so that a re-run of the job resumes it.
    checkpoint_path: Path | None = None

    @property
    def label(self) -> str:
        return self.input_path.name


@dataclass(frozen=True)
class JobResult:
    """The outcome of a job: ``done`` (encoded), ``skipped`` (up to date) or ``failed``."""

    input_path: Path
    status: JobStatus
    report: dict[str, Any] | None = None
    error: str | None = None
    error_kind: ErrorKind | None = None
    detail: str | None = None
    seconds: float = 0.0

    @property
    def bpp(self) -> float | None:
        return None if self.report is None else self.report.get("bpp")

    @property
    def psnr_db(self) -> float | None:
        """PSNR of the reconstruction: ``psnr_yuv`` (YUV) or ``psnr_rgb`` (PNG)."""
        if self.report is None:
            return None
        return self.report.get("psnr_rgb", self.report.get("psnr_yuv"))

    def as_dict(self) -> dict[str, Any]:
        """The JSON line of ``batch --json``: status, then the report or the error."""
        payload: dict[str, Any] = {"status": self.status, "input": str(self.input_path)}
        if self.report is not None:
            payload.update(self.report)
            payload["input"] = str(self.input_path)
        if self.status == "failed":
            payload.update(error=self.error, error_kind=self.error_kind)
        payload["seconds"] = round(self.seconds, 3)
        return payload

    def summary(self) -> str:
        """What happened, without the file name: "encoded, 0.1234 bpp, 38.20 dB, 2.1 s"."""
        if self.status == "failed":
            return f"failed ({self.error_kind}): {self.error}"
        parts = ["encoded" if self.status == "done" else "up to date, not encoded again"]
        if self.bpp is not None:
            parts.append(f"{self.bpp:.4f} bpp")
        if self.psnr_db is not None:
            parts.append(f"{self.psnr_db:.2f} dB")
        if self.status == "done":
            parts.append(f"{self.seconds:.1f} s")
        return ", ".join(parts)

    def describe(self) -> str:
        """One plain-text line for logs."""
        return f"{self.input_path.name}: {self.summary()}"


def classify_error(error: BaseException) -> ErrorKind:
    """Permanent when the input is at fault (retrying gives the same), transient otherwise.

    Permanent: :class:`InputError` (bad name, truncated, unsupported), :class:`BitstreamError`,
    :class:`EncodingError` (a seeded encode diverges the same way again) and unexpected
    exceptions (bugs). Transient: ``OSError`` (writing outputs, network file systems),
    ``MemoryError`` and torch's out-of-memory errors, and other coolchic errors such as an
    unavailable device.
    """
    if isinstance(error, InputError | BitstreamError | EncodingError | ResourceError):
        return "permanent"
    if isinstance(error, OSError | MemoryError | CoolchicError):
        return "transient"
    if "OutOfMemory" in type(error).__name__ or "out of memory" in str(error).lower():
        return "transient"
    return "permanent"


def describe_error(error: BaseException) -> str:
    """One line that names what failed, for reports, logs and ``<name>.error.json``."""
    if isinstance(error, CoolchicError):
        return str(error)
    if isinstance(error, OSError):
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror or error}"
    if isinstance(error, MemoryError):
        return "out of memory"
    return f"{type(error).__name__}: {error}"


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


@dataclass(frozen=True)
class EncodeTask:
    """A self-contained encode for a remote worker: the first frame's samples and the settings.

    It needs no shared file system: the coordinator reads the input and writes the outputs, the
    worker only computes, so running a task twice (after a lost worker) is always safe.
    """

    label: str
    samples: FrameSamples
    settings: EncodeSettings
    #: The coordinator's checkpoint path: resumable from any worker that sees the same path.
    checkpoint_path: Path | None = None


@dataclass(frozen=True)
class TaskOutcome:
    """What a worker sends back: the stream and the codec's report, or a classified error."""

    bitstream: bytes | None = None
    report: dict[str, Any] | None = None
    error: str | None = None
    error_kind: ErrorKind | None = None
    detail: str | None = None
    seconds: float = 0.0


def run_encode_task(
    task: EncodeTask, *, progress: ProgressCallback = ignore_progress
) -> TaskOutcome:
    """Run an :class:`EncodeTask`; a failure comes back classified, never as an exception."""
    started = time.perf_counter()
    try:
        encoded = encode_frame(
            task.samples.to_frame(),
            task.settings,
            progress=progress,
            label=task.label,
            checkpoint_path=task.checkpoint_path,
        )
        if task.checkpoint_path is not None:  # the stream is made: no worker needs it again
            with contextlib.suppress(OSError):
                task.checkpoint_path.unlink(missing_ok=True)
    except Exception as error:
        logger.debug("%s: encode failed", task.label, exc_info=True)
        return TaskOutcome(
            error=describe_error(error),
            error_kind=classify_error(error),
            detail=None if isinstance(error, CoolchicError) else traceback.format_exc(),
            seconds=time.perf_counter() - started,
        )
    return TaskOutcome(
        bitstream=encoded.bitstream,
        report=encoded.report,
        seconds=time.perf_counter() - started,
    )


def finish_remote_job(
    request: JobRequest, source: InputIdentity, outcome: TaskOutcome
) -> JobResult:
    """On the coordinator: write a remote job's outputs atomically (report last)."""
    if outcome.bitstream is None or outcome.report is None:
        return JobResult(
            request.input_path,
            "failed",
            error=outcome.error or "the worker returned no result",
            error_kind=outcome.error_kind or "transient",
            detail=outcome.detail,
            seconds=outcome.seconds,
        )
    try:
        report = job_report(
            source, request.cool_path, outcome.bitstream, outcome.report, request.settings
        )
        request.cool_path.parent.mkdir(parents=True, exist_ok=True)
        write_outputs(request.cool_path, outcome.bitstream, request.report_path, report)
    except OSError as error:
        return JobResult(
            request.input_path,
            "failed",
            error=describe_error(error),
            error_kind="transient",
            seconds=outcome.seconds,
        )
    return JobResult(request.input_path, "done", report=report, seconds=outcome.seconds)


def remove_stale_temporaries(folder: Path, *, recursive: bool = True) -> list[Path]:
    """Delete the temporary files that an interrupted atomic write left in ``folder``.

    Only names of the form ``.<stem>.cool.<random>.tmp`` / ``.<stem>.json.<random>.tmp``
    (what :func:`~coolchic.io.files.atomic_write_bytes` creates for our outputs) are touched.
    """
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    pattern_files = folder.rglob(".*.tmp") if recursive else folder.glob(".*.tmp")
    for path in pattern_files:
        parts = path.name.split(".")
        # "", stem..., "cool"|"json", random, "tmp"
        if len(parts) >= 5 and parts[-3] in ("cool", "json") and path.is_file():
            with output_folder_lock(path.parent), contextlib.suppress(FileNotFoundError):
                path.unlink()  # under the lock: not a write of another process in progress
                removed.append(path)
    return removed


# --------------------------------------------------------------------------------------------
# What executors report


@dataclass(frozen=True)
class JobProgress:
    """A progress event of a running job, as an executor's ``wait`` reports it."""

    job_id: JobId
    event: ProgressEvent


@dataclass(frozen=True)
class JobFinished:
    """The result of a job; a worker that died mid-job gives a transient failure."""

    job_id: JobId
    result: JobResult


JobMessage = JobProgress | JobFinished


# --------------------------------------------------------------------------------------------
# Batches


class JobListener(Protocol):
    """Who follows jobs as they run (the CLI's progress display, the daemon's logs)."""

    def job_started(self, job_id: JobId, label: str) -> None: ...

    def job_progress(self, job_id: JobId, event: ProgressEvent) -> None: ...

    def job_finished(self, job_id: JobId, result: JobResult) -> None: ...


class SilentListener:
    """A listener that ignores everything."""

    def job_started(self, job_id: JobId, label: str) -> None:
        del job_id, label

    def job_progress(self, job_id: JobId, event: ProgressEvent) -> None:
        del job_id, event

    def job_finished(self, job_id: JobId, result: JobResult) -> None:
        del job_id, result


@dataclass
class _Planned:
    job_id: JobId
    item: InputFile
    request: JobRequest | None = None
    result: JobResult | None = None


@dataclass
class BatchPlan:
    """The inputs of a batch with their outputs; inputs that cannot run are failed already."""

    items: list[_Planned] = field(default_factory=list)

    @property
    def results(self) -> list[JobResult]:
        return [p.result for p in self.items if p.result is not None]


def plan_batch(
    inputs: Sequence[InputFile], output_root: Path, settings: EncodeSettings, *, force: bool
) -> BatchPlan:
    """Pair each input with its output paths; refused inputs and name clashes fail here."""
    plan = BatchPlan()
    owners: dict[Path, Path] = {}
    for index, item in enumerate(inputs):
        planned = _Planned(JobId(index), item)
        plan.items.append(planned)
        if item.refused is not None:
            planned.result = _refused(item.path, f"refused: {item.refused}")
            continue
        try:
            cool, report = output_paths(item.relative, output_root)
        except InputError as error:
            planned.result = _refused(item.path, str(error))
            continue
        owner = owners.setdefault(cool.resolve(), item.path)
        if owner != item.path:
            planned.result = _refused(
                item.path, f"its output {cool} is already the output of {owner}"
            )
            continue
        planned.request = JobRequest(
            item.path,
            cool,
            report,
            settings,
            skip_if_up_to_date=False,
            checkpoint_path=checkpoint_path(output_root, item.relative),
        )
        try:
            precheck_input(item.path)
        except InputError as error:
            planned.result = _refused(item.path, str(error))
            continue
        if not force:
            existing = up_to_date_report(item.path, cool, report, settings)
            if existing is not None:
                planned.result = JobResult(item.path, "skipped", report=existing)
    return plan


def _refused(path: Path, reason: str) -> JobResult:
    return JobResult(path, "failed", error=reason, error_kind="permanent")


def run_batch(
    plan: BatchPlan,
    executor: Executor,
    *,
    listener: JobListener | None = None,
    memory: int | None = None,
) -> list[JobResult]:
    """Run the planned jobs on ``executor``, as many at once as it has room for, in input
    order; failures never stop it.

    With a ``memory`` budget (local encodes), a job starts only when its estimated peak fits
    beside those running (:class:`~coolchic.resources.MemoryGate`); one that can never fit
    fails at once.

    Returns one result per input, in input order.
    """
    gate = MemoryGate(memory)
    listener = listener or SilentListener()
    for planned in plan.items:
        if planned.result is not None:
            listener.job_finished(planned.job_id, planned.result)
            logger.info("%s", planned.result.describe())
    pending = deque(p for p in plan.items if p.result is None and p.request is not None)
    by_id = {p.job_id: p for p in plan.items}
    while pending or executor.running:
        while pending and executor.free > 0:
            planned = pending[0]
            assert planned.request is not None
            estimate = job_memory_estimate(planned.request.input_path, planned.request.settings)
            size = frame_size(planned.request.input_path) or (0, 0)
            try:
                refuse_if_too_big(*size, estimate, memory)
            except ResourceError as error:
                pending.popleft()
                planned.result = _refused(planned.request.input_path, str(error))
                listener.job_finished(planned.job_id, planned.result)
                logger.warning("%s", planned.result.describe())
                continue
            if not gate.admits(estimate):
                break  # waits for a running encode to end
            pending.popleft()
            gate.hold(planned.job_id, estimate)
            executor.submit(planned.job_id, planned.request)
            listener.job_started(planned.job_id, planned.request.label)
            logger.debug("%s: started", planned.request.label)
        for message in executor.wait(0.5):
            if isinstance(message, JobProgress):
                listener.job_progress(message.job_id, message.event)
                continue
            by_id[message.job_id].result = message.result
            gate.release(message.job_id)
            listener.job_finished(message.job_id, message.result)
            level = logging.WARNING if message.result.status == "failed" else logging.INFO
            logger.log(level, "%s", message.result.describe())
    folders = {p.request.checkpoint_path.parent for p in plan.items if _checkpointed(p)}
    for folder in folders:  # the hidden checkpoint folder goes once it is empty
        with contextlib.suppress(OSError):
            folder.rmdir()
    return [p.result for p in plan.items if p.result is not None]


def _checkpointed(planned: _Planned) -> bool:
    return planned.request is not None and planned.request.checkpoint_path is not None
