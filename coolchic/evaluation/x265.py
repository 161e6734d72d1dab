"""x265 (HEVC) all-intra as a rate-distortion anchor, scored by coolchic's own metrics.

``x265 --preset veryslow --tune psnr --keyint 1 --frames 1 --qp Q --no-info`` on the raw planes
of the frame (``--no-info`` drops the ~2 KB SEI with x265's version and options, more than a
small picture at low rate). 4:2:0 uses profile main/main10, 4:4:4 main444-8/-10; RGB is coded
the way HEVC RExt codes it: the G, B, R planes as the Y, U, V of a 4:4:4 picture with
``--colormatrix gbr --range full``, so no colour conversion loses anything. ffmpeg decodes the
stream into its native pixel format (asked of ffprobe first, so that it never converts).
Bits = 8 × the size of the .hevc file, parameter sets included. The Debian packages ``x265``
and ``ffmpeg`` provide the tools.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coolchic.io import Frame

__all__ = ["DEFAULT_QPS", "TOOLS", "AnchorPoint", "missing_tools", "x265_point"]

#: QPs of an anchor curve: from near-transparent to very low rates at typical sizes.
DEFAULT_QPS = (22, 27, 32, 37, 42, 47)
TOOLS = ("x265", "ffmpeg", "ffprobe")

# ffmpeg's native pixel format of the decoded stream, per (format, bit depth).
_PIX_FMTS = {
    ("yuv420", 8): {"yuv420p"},
    ("yuv420", 10): {"yuv420p10le"},
    ("yuv444", 8): {"yuv444p"},
    ("yuv444", 10): {"yuv444p10le"},
    ("rgb", 8): {"gbrp", "yuv444p"},  # both are G, B, R planes in that order here
}

Run = Callable[[Sequence[str]], float]
Output = Callable[[Sequence[str]], str]


@dataclass(frozen=True)
class AnchorPoint:
    """One picture coded by x265."""

    qp: int
    bits: int
    decoded: Frame
    encode_seconds: float
    decode_seconds: float
    profile: str
    pix_fmt: str


def missing_tools() -> list[str]:
    """The tools of :data:`TOOLS` not on PATH."""
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def run_command(command: Sequence[str]) -> float:
    """Run a command; return its wall time. Raises ``RuntimeError`` with its stderr on failure."""
    started = time.perf_counter()
    result = subprocess.run(
        [str(part) for part in command],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip()[-2000:]
        raise RuntimeError(f"{command[0]} failed ({result.returncode}): {tail}")
    return time.perf_counter() - started


def command_output(command: Sequence[str]) -> str:
    """A command's standard output, stripped."""
    return subprocess.run(
        [str(part) for part in command],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def coded_planes(frame: Frame) -> tuple[np.ndarray, ...]:
    """Planes in the order HEVC codes them: Y, U, V, or G, B, R for RGB."""
    planes = frame.integer_planes()
    if frame.format == "rgb":
        red, green, blue = planes
        return (green, blue, red)
    return tuple(planes)


def write_raw(path: Path, planes: Sequence[np.ndarray], bit_depth: int) -> None:
    """Planar raw samples: bytes up to 8 bits, little-endian 16-bit words above."""
    dtype = np.dtype(np.uint8) if bit_depth <= 8 else np.dtype("<u2")
    with open(path, "wb") as handle:
        for plane in planes:
            handle.write(np.ascontiguousarray(plane, dtype=dtype).tobytes())


def read_raw(path: Path, shapes: Sequence[tuple[int, int]], bit_depth: int) -> list[np.ndarray]:
    """The first frame of a planar raw file, checking that it holds a whole frame."""
    dtype = np.dtype(np.uint8) if bit_depth <= 8 else np.dtype("<u2")
    data = np.fromfile(path, dtype=dtype)
    needed = sum(rows * cols for rows, cols in shapes)
    if data.size < needed:
        raise RuntimeError(f"{path}: {data.size} samples, expected at least {needed}")
    planes, offset = [], 0
    for rows, cols in shapes:
        planes.append(data[offset : offset + rows * cols].reshape(rows, cols))
        offset += rows * cols
    return planes


def read_raw_frame(path: Path, like: Frame) -> Frame:
    """A planar raw file holding a frame of ``like``'s format, size and bit depth."""
    planes = read_raw(path, [plane.shape for plane in like.integer_planes()], like.bit_depth)
    return Frame.from_integer_planes(
        tuple(planes),  # type: ignore[arg-type]
        fmt=like.format,
        bit_depth=like.bit_depth,
    )


def x265_point(
    frame: Frame,
    qp: int,
    work: Path,
    *,
    raw_input: Path | None = None,
    threads: int = 1,
    fps: str = "1",
    run: Run = run_command,
    output: Output = command_output,
) -> AnchorPoint:
    """Code ``frame`` with x265 at ``qp`` in folder ``work`` and decode it back.

    ``raw_input`` is the frame's planes in coding order (:func:`coded_planes`, written once
    and shared by the points of a curve); it is written into ``work`` when not given.
    """
    depth = frame.bit_depth
    is_444 = frame.format in ("yuv444", "rgb")
    if is_444:
        profile = "main444-8" if depth == 8 else f"main444-{depth}"
    else:
        profile = "main" if depth == 8 else f"main{depth}"
    if raw_input is None:
        raw_input = work / f"frame0_{frame.format}_{depth}b.raw"
        write_raw(raw_input, coded_planes(frame), depth)
    stream = work / f"qp{qp}.hevc"
    command: list[str | int | Path] = [
        *("x265", "--input", raw_input, "--input-res", f"{frame.width}x{frame.height}"),
        *("--fps", fps, "--input-depth", depth, "--output-depth", depth),
        *("--input-csp", "i444" if is_444 else "i420", "--profile", profile),
        *("--frames", 1, "--preset", "veryslow", "--tune", "psnr", "--keyint", 1),
        *("--qp", qp, "--no-info", "--pools", threads, "--frame-threads", 1),
        *("--log-level", "error"),
    ]
    if frame.format == "rgb":
        command += ["--colormatrix", "gbr", "--range", "full"]
        command += ["--colorprim", "bt709", "--transfer", "iec61966-2-1"]
    command += ["--output", stream]
    encode_s = run([str(part) for part in command])
    pix_fmt = output(
        [
            *("ffprobe", "-v", "error", "-select_streams", "v:0"),
            *("-show_entries", "stream=pix_fmt", "-of", "csv=p=0", str(stream)),
        ]
    )
    expected = _PIX_FMTS.get((frame.format, depth), set())
    if pix_fmt not in expected:
        raise RuntimeError(f"{stream}: ffmpeg decodes to {pix_fmt}, expected one of {expected}")
    decoded_path = work / f"qp{qp}_decoded.raw"
    decode_s = run(
        [
            *("ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error"),
            *("-threads", str(threads), "-f", "hevc", "-i", str(stream), "-frames:v", "1"),
            *("-f", "rawvideo", "-pix_fmt", pix_fmt, "-y", str(decoded_path)),
        ]
    )
    shapes = [plane.shape for plane in coded_planes(frame)]
    planes = read_raw(decoded_path, shapes, depth)  # type: ignore[arg-type]
    decoded_path.unlink(missing_ok=True)
    if frame.format == "rgb":
        green, blue, red = planes
        planes = [red, green, blue]
    decoded = Frame.from_integer_planes(
        tuple(planes),  # type: ignore[arg-type]
        fmt=frame.format,
        bit_depth=depth,
    )
    return AnchorPoint(
        qp=qp,
        bits=8 * stream.stat().st_size,
        decoded=decoded,
        encode_seconds=encode_s,
        decode_seconds=decode_s,
        profile=profile,
        pix_fmt=pix_fmt,
    )
