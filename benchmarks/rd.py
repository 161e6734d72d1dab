"""Rate-distortion benchmark: coolchic against HEVC, AV1, JPEG and WebP, in one run, with BD-rate.

Every input is coded by coolchic at several λ and, in the same run, by the reference codecs at
several quality settings. Every reconstruction is measured with coolchic's own metrics
(:func:`coolchic.io.frame_metrics`) against the first frame of the input, so all codecs are
scored by the same code:

* YUV inputs: ``psnr`` is the PSNR of the pixel-count-weighted MSE, (4·MSE_Y + MSE_U + MSE_V)/6
  for 4:2:0 (the plain mean over the planes for 4:4:4), what coolchic trains on and reports;
* PNG (8-bit RGB) inputs: ``psnr`` is the PSNR of the MSE over R, G and B.

Reference codecs, and how each one is made comparable:

* **x265** (HEVC, Debian package ``x265``), all-intra: ``--preset veryslow --tune psnr
  --keyint 1 --frames 1 --qp Q --no-info`` on the raw planes. ``--no-info`` drops the SEI
  message in which x265 writes its version and every option (about 2 KB, more than the whole
  picture at low rate on small images). x265 lowers the QP of I pictures by 6·log2(ipratio=1.4)
  ≈ 3, so ``qp=32`` codes at QP 29; the setting column shows the value given on the command
  line. 4:2:0 inputs use profile main/main10; 4:4:4 inputs main444-8/main444-10. **RGB (PNG)
  inputs are coded the way HEVC RExt codes RGB**: the G, B, R planes are given to x265 as the
  Y, U, V planes of a 4:4:4 picture (``--input-csp i444 --profile main444-8``) with
  ``--colormatrix gbr --range full`` signalled, so nothing is lost to a colour conversion. The
  stream is decoded by ffmpeg (Debian ``ffmpeg``) into its native pixel format, asked of
  ffprobe first so that ffmpeg never converts (``yuv420p``, ``yuv420p10le``, ``yuv444p``,
  ``gbrp``, ...). Bits = 8 × the size of the .hevc file (VPS/SPS/PPS included).
* **AV1** (libaom, Debian ``aom-tools``), all-intra: ``aomenc --allintra --cpu-used=0
  --end-usage=q --cq-level=Q --limit=1 --deltaq-mode=0 --tune=psnr --obu``, decoded by
  ``aomdec --rawvideo``. Profile 0 for 4:2:0, profile 1 for 4:4:4; RGB inputs are coded as
  G, B, R planes in 4:4:4 with ``--matrix-coefficients=identity`` (AV1's RGB coding). Bits =
  8 × the size of the Section-5 OBU file (temporal delimiter and sequence header included, no
  IVF container).
* **JPEG** (Pillow's libjpeg, ``optimize=True``): YUV 4:2:0 inputs are given to libjpeg as
  Y'CbCr planes directly (chroma repeated 2x2, which libjpeg's 2x2-averaging downsampler turns
  back into the original chroma exactly) with 4:2:0 subsampling, so no colour conversion
  happens. Luma is decoded at full size; chroma is decoded at its coded resolution (a 1/2-scale
  decode, where libjpeg scales the chroma IDCT instead of upsampling), so the chroma planes
  measured are the JPEG decoder's own. 4:4:4 inputs use 4:4:4 subsampling. RGB inputs are
  handed to Pillow as RGB (libjpeg's JFIF conversion, 4:2:0 by default, see
  ``--jpeg-subsampling``) and decoded back to RGB, the way JPEG is used on RGB images.
  JPEG is 8-bit: 10-bit inputs are skipped.
* **WebP** (Pillow's libwebp, lossy, ``method=6``): libwebp only accepts RGB. RGB inputs are
  coded directly. **YUV inputs go through RGB**: the planes are converted to 8-bit RGB with the
  inverse of the BT.601 limited-range matrix that libwebp itself uses to go back to Y'CbCr, and
  the decoded RGB is converted back with the same matrix (chroma averaged 2x2 for 4:2:0). The
  round trip is close to, but not exactly, the identity: its own PSNR without any coding is
  written to the summary as ``webp_conversion_floor_psnr`` and caps WebP at high rates; treat
  the WebP figures on YUV inputs as indicative. 10-bit inputs are skipped.

BD-rate (Bjøntegaard delta rate) of coolchic against each reference, per input: each curve is
reduced to its Pareto front (a point with more bits and a lower PSNR than another point of the
same curve is dropped), log(rate) is interpolated as a function of PSNR with a piecewise cubic
Hermite interpolator (PCHIP, Fritsch–Carlson slopes, as in scipy's ``PchipInterpolator``),
both interpolants are integrated exactly over the overlapping PSNR interval, and
``BD-rate = exp(mean difference of log rates) − 1``. Negative means coolchic needs fewer bits
for the same PSNR. It is reported as n/a when either curve has fewer than ``--bd-min-points``
points (default 4) or the PSNR ranges do not overlap. scipy is used when installed; otherwise
the same PCHIP is computed by this script (``--self-test`` checks both).

Install::

    apt-get install -y x265 ffmpeg aom-tools   # x265; ffmpeg + ffprobe; aomenc + aomdec
    pip install -e ".[benchmarks]"             # matplotlib (RD plots) and scipy (PCHIP)

Run::

    python benchmarks/rd.py --self-test
    python benchmarks/rd.py --inputs photos/kodim15_192x128_01p_yuv420_8b.yuv \\
        photos/192x128_kodim15.png --recipe fast

With ``--seeds 0,1,2,3`` coolchic codes every λ once per seed (codec ``coolchic-seed<S>``) and
the summary gives each seed's BD-rate, their mean and its standard error: on small frames one
seed's curve moves by several points.

Outputs in ``--out`` (default ``benchmarks/results/<timestamp>/``, git-ignored): ``rd.tsv`` (one
row per input × codec × setting), ``summary.json`` (BD-rates, versions, machine, command),
``rd_<input>.png`` (RD plots), ``commands.log`` (every external command run) and ``work/``
(bitstreams; decoded pictures with ``--keep-decoded``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import datetime as dt
import io
import json
import math
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO_ROOT))

from coolchic.evaluation.bdrate import (  # noqa: E402
    BdRate,
    bd_rate,
    pchip_evaluate,
    pchip_integral,
    scipy_available,
)
from coolchic.evaluation.x265 import (  # noqa: E402
    coded_planes,
    command_output,
    read_raw,
    read_raw_frame,
    run_command,
    write_raw,
    x265_point,
)
from coolchic.io import Frame, frame_metrics, read_frame  # noqa: E402

# Four points of Cool-chic's published λ grid (1e-4, 4e-4, 1e-3, 4e-3, 2e-2), so results can be
# set beside Cool-chic 5.0's published per-image results. The high-λ end is kept rather than 1e-4:
# on small images the networks weigh a lot (0.28 bpp in an `instant` encode of a 192x128 image),
# so 4e-4..2e-2 is expected to span about 0.1-1.5 bpp there; on 768x512 Kodak the published
# results at these λ span 0.06-0.5 bpp (kodim15). Add 1e-4 with --lmbdas for high rates.
DEFAULT_LMBDAS = (4e-4, 1e-3, 4e-3, 2e-2)
DEFAULT_X265_QPS = (22, 27, 32, 37, 42, 47)
DEFAULT_AV1_CQ = (15, 23, 31, 39, 47, 55)
DEFAULT_JPEG_QUALITIES = (10, 20, 30, 40, 50, 60, 70, 80, 90, 95)
DEFAULT_WEBP_QUALITIES = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)

CODECS = ("coolchic", "x265", "av1", "jpeg", "webp")
REFERENCES = CODECS[1:]
INSTALL_COMMAND = "apt-get install -y x265 ffmpeg aom-tools"
TOOLS = {"x265": ("x265", "ffmpeg", "ffprobe"), "av1": ("aomenc", "aomdec")}

TSV_COLUMNS = (
    "input",
    "codec",
    "setting",
    "bits",
    "bpp",
    "psnr",
    "psnr_y",
    "encode_seconds",
    "decode_seconds",
    "metric",
    "psnr_u",
    "psnr_v",
    "psnr_r",
    "psnr_g",
    "psnr_b",
    "encode_wall_seconds",
    "decode_wall_seconds",
    "notes",
)


# ============================================================================================
# BD-rate self-test (the BD-rate itself is coolchic.evaluation.bdrate)


def self_test() -> int:
    """Check the BD-rate on synthetic curves; returns a process exit status."""
    failures = 0

    def check(label: str, value: float | None, expected: float | None, tol: float = 1e-9) -> None:
        nonlocal failures
        ok = (value is None and expected is None) or (
            value is not None and expected is not None and abs(value - expected) <= tol
        )
        failures += not ok
        shown = "None" if value is None else f"{value:.12g}"
        print(f"  {'ok  ' if ok else 'FAIL'} {label}: {shown} (expected {expected})")

    rates = np.array([0.12, 0.25, 0.5, 0.9, 1.6])
    psnrs = np.array([29.0, 31.5, 34.2, 36.8, 39.9])
    implementations = [False] + ([True] if scipy_available() else [])
    for use_scipy in implementations:
        name = "scipy PchipInterpolator" if use_scipy else "own PCHIP"
        print(f"BD-rate self-test with {name}:")
        check(
            "identical curves", bd_rate(rates, psnrs, rates, psnrs, use_scipy=use_scipy).percent, 0
        )
        check(
            "10 % fewer bits at every PSNR",
            bd_rate(rates, psnrs, 0.9 * rates, psnrs, use_scipy=use_scipy).percent,
            -10.0,
        )
        check(
            "25 % more bits at every PSNR",
            bd_rate(rates, psnrs, 1.25 * rates, psnrs, use_scipy=use_scipy).percent,
            25.0,
        )
        # Same curve sampled at other PSNRs (a straight line in log-rate): still 0.
        line_psnr = np.linspace(28, 40, 6)
        shifted = np.linspace(30.3, 41.0, 5)
        check(
            "same log-linear curve, other sample points",
            bd_rate(
                np.exp(0.2 * line_psnr),
                line_psnr,
                np.exp(0.2 * shifted),
                shifted,
                use_scipy=use_scipy,
            ).percent,
            0.0,
        )
        check(
            "dominated point ignored",
            bd_rate(
                rates,
                psnrs,
                np.append(0.9 * rates, 2.0),
                np.append(psnrs, 30.0),
                use_scipy=use_scipy,
            ).percent,
            -10.0,
        )
        check("3 points < min 4 -> n/a", bd_rate(rates[:3], psnrs[:3], rates, psnrs).percent, None)
        check("no overlap -> n/a", bd_rate(rates, psnrs, rates, psnrs + 20).percent, None)
    print("several seeds (--seeds):")
    seeds = {
        4: bd_rate(rates, psnrs, 0.9 * rates, psnrs),
        7: bd_rate(rates, psnrs, 1.1 * rates, psnrs),
    }
    check("mean of -10 % and +10 %", mean_over_seeds(seeds).percent, 0.0)
    check("standard error of -10 and +10", standard_error([-10.0, 10.0]), 10.0)
    no_overlap = bd_rate(rates, psnrs, rates, psnrs + 20)
    check("one seed n/a -> mean n/a", mean_over_seeds({**seeds, 9: no_overlap}).percent, None)
    curves_found = coolchic_curves(
        {"x265": (list(rates), list(psnrs)), "coolchic-seed7": ([1.0], [30.0])}
    )
    check("curve of seed 7 found", float(next(iter(curves_found))), 7.0)
    check("setting 1e-3@7 -> seed 7", float(coolchic_setting("1e-3@7", 0)[1]), 7.0)
    check("setting 1e-3 -> default seed", float(coolchic_setting("1e-3", 5)[1]), 5.0)
    if scipy_available():
        from scipy.interpolate import PchipInterpolator

        print("own PCHIP against scipy on random monotone and non-monotone data:")
        rng = np.random.default_rng(0)
        worst_value = worst_integral = 0.0
        for _ in range(200):
            n = int(rng.integers(2, 9))
            x = np.sort(rng.uniform(20, 45, n))
            if np.any(np.diff(x) <= 1e-6):
                continue
            y = rng.normal(0, 1, n) if rng.random() < 0.3 else np.sort(rng.normal(0, 1, n))
            points = rng.uniform(x[0], x[-1], 7)
            reference = PchipInterpolator(x, y)
            worst_value = max(
                worst_value, float(np.max(np.abs(pchip_evaluate(x, y, points) - reference(points))))
            )
            lo, hi = np.sort(rng.uniform(x[0], x[-1], 2))
            worst_integral = max(
                worst_integral, abs(pchip_integral(x, y, lo, hi) - reference.integrate(lo, hi))
            )
        check("max |value difference|", worst_value if worst_value > 1e-9 else 0.0, 0.0)
        check("max |integral difference|", worst_integral if worst_integral > 1e-9 else 0.0, 0.0)
    else:
        print("scipy not installed: own PCHIP not compared with scipy")
    print("self-test", "FAILED" if failures else "passed")
    return 1 if failures else 0


# ============================================================================================
# Inputs, raw planes, measurement


@dataclass(frozen=True)
class Source:
    """One input: its first frame and how the reference codecs see it."""

    path: Path
    label: str
    frame: Frame

    @property
    def kind(self) -> str:
        return self.frame.format  # "yuv420", "yuv444" or "rgb"

    @property
    def bit_depth(self) -> int:
        return self.frame.bit_depth

    @property
    def width(self) -> int:
        return self.frame.width

    @property
    def height(self) -> int:
        return self.frame.height

    @property
    def n_pixels(self) -> int:
        return self.width * self.height

    @property
    def fps(self) -> str:
        return self.frame.source.fps_text if self.frame.source else "1"

    @property
    def metric(self) -> str:
        return "psnr_rgb" if self.kind == "rgb" else "psnr_yuv"

    def coded_planes(self) -> tuple[np.ndarray, ...]:
        """Planes in the order the video codecs code them: Y, U, V, or G, B, R for RGB."""
        return coded_planes(self.frame)

    def plane_shapes(self) -> tuple[tuple[int, int], ...]:
        return tuple(plane.shape for plane in self.coded_planes())  # type: ignore[misc]

    def frame_from_coded(self, planes: Sequence[np.ndarray]) -> Frame:
        """A decoded frame from planes in coding order (G, B, R for RGB)."""
        if self.kind == "rgb":
            green, blue, red = planes
            planes = (red, green, blue)
        return Frame.from_integer_planes(
            tuple(planes),  # type: ignore[arg-type]
            fmt=self.kind,  # type: ignore[arg-type]
            bit_depth=self.bit_depth,
        )


def load_source(path: Path) -> Source:
    frame = read_frame(path)
    return Source(path=path, label=path.stem, frame=frame)


def measure(source: Source, decoded: Frame) -> dict[str, float]:
    """coolchic's metrics of a decoded frame against the source; adds ``psnr`` (the merit)."""
    values = dict(frame_metrics(source.frame, decoded).as_dict())
    values["psnr"] = values[source.metric]
    return values


# BT.601 limited range, the matrix libwebp uses between RGB and Y'CbCr (src/dsp/yuv.h).
_RGB_TO_YCC = (
    np.array(
        [
            [65.481, 128.553, 24.966],
            [-37.797, -74.203, 112.0],
            [112.0, -93.786, -18.214],
        ]
    )
    / 255.0
)
_YCC_OFFSET = np.array([16.0, 128.0, 128.0])
_YCC_TO_RGB = np.linalg.inv(_RGB_TO_YCC)


def _upsample(plane: np.ndarray) -> np.ndarray:
    return plane.repeat(2, axis=0).repeat(2, axis=1)


def _downsample_mean(plane: np.ndarray) -> np.ndarray:
    rows, cols = plane.shape
    return plane.reshape(rows // 2, 2, cols // 2, 2).mean(axis=(1, 3))


def yuv8_to_rgb(source: Source) -> np.ndarray:
    """8-bit Y'CbCr planes → ``[H, W, 3]`` uint8 RGB (BT.601 limited range, chroma repeated)."""
    y, u, v = (plane.astype(np.float64) for plane in source.frame.integer_planes())
    if source.kind == "yuv420":
        u, v = _upsample(u), _upsample(v)
    ycc = np.stack([y, u, v], axis=-1) - _YCC_OFFSET
    rgb = ycc @ _YCC_TO_RGB.T
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def rgb_to_yuv8(source: Source, rgb: np.ndarray) -> Frame:
    """``[H, W, 3]`` uint8 RGB → 8-bit Y'CbCr frame of the source's format (inverse of above)."""
    ycc = rgb.astype(np.float64) @ _RGB_TO_YCC.T + _YCC_OFFSET
    planes = [ycc[..., 0], ycc[..., 1], ycc[..., 2]]
    if source.kind == "yuv420":
        planes[1], planes[2] = _downsample_mean(planes[1]), _downsample_mean(planes[2])
    integers = tuple(np.clip(np.rint(p), 0, 255).astype(np.uint8) for p in planes)
    return Frame.from_integer_planes(integers, fmt=source.kind, bit_depth=8)  # type: ignore[arg-type]


# ============================================================================================
# Running the codecs


@dataclass
class Point:
    """One coded picture."""

    codec: str
    setting: str
    bits: int
    decoded: Frame
    encode_seconds: float
    decode_seconds: float
    encode_wall_seconds: float | None = None
    decode_wall_seconds: float | None = None
    notes: str = ""


class Skip(Exception):
    """This codec does not apply to this input (e.g. JPEG on 10-bit)."""


@dataclass
class Runner:
    """Runs external commands, logging each one; shared by the codecs of one benchmark run."""

    log_path: Path
    threads: int
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, command: Sequence[str]) -> float:
        """Run a command, logged first; return its wall time in seconds. Raises with stderr on
        failure."""
        with self._lock, open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(shlex.join(str(part) for part in command) + "\n")
        return run_command(command)

    def output(self, command: Sequence[str]) -> str:
        return command_output(command)


@dataclass
class Settings:
    recipe: str
    seed: int
    device: str
    threads: int
    aom_cpu_used: int
    jpeg_subsampling: str
    verify_decode: bool
    keep_decoded: bool
    coolchic_args: tuple[str, ...] = ()


#: The codec label of one seed's curve when a run trains several (``--seeds``).
SEED_CURVE = re.compile(r"coolchic-seed(\d+)")


def coolchic_setting(setting: str, default_seed: int) -> tuple[str, int, str]:
    """``λ`` or ``λ@seed`` → (λ, seed, codec label): one curve per seed when seeds are given."""
    lmbda, _, seed = setting.partition("@")
    if not seed:
        return lmbda, default_seed, "coolchic"
    return lmbda, int(seed), f"coolchic-seed{int(seed)}"


def run_coolchic(
    source: Source, setting: str, work: Path, runner: Runner, settings: Settings
) -> Point:
    lmbda, seed, codec = coolchic_setting(setting, settings.seed)
    stem = f"lmbda{lmbda}" if codec == "coolchic" else f"lmbda{lmbda}_seed{seed}"
    bitstream = work / f"{stem}.cool"
    report_path = work / f"{stem}.json"
    decoded_path = work / (f"{stem}_decoded.png" if source.kind == "rgb" else f"{stem}_decoded.yuv")
    coolchic = [sys.executable, "-m", "coolchic", "-q", "--threads", settings.threads]
    wall = runner.run(
        [
            *coolchic,
            *("--device", settings.device, "encode", source.path, "-o", bitstream),
            *("--recipe", settings.recipe, "--lmbda", lmbda, "--seed", seed),
            *("--report", report_path, "--decoded", decoded_path),
            *settings.coolchic_args,
        ]
    )
    report = json.loads(report_path.read_text(encoding="utf-8"))
    bits = 8 * bitstream.stat().st_size
    if report["bits"] != bits:
        raise RuntimeError(f"report says {report['bits']} bits, the file has {bits}")
    decoded = _read_decoded(source, decoded_path)
    notes = [f"iterations={report['iterations']}", f"mac_per_pixel={report['mac_per_pixel']}"]
    decode_wall = None
    if settings.verify_decode:
        check_path = work / (f"{stem}_cli.png" if source.kind == "rgb" else f"{stem}_cli.yuv")
        decode_wall = runner.run([*coolchic, "decode", bitstream, "-o", check_path])
        again = _read_decoded(source, check_path)
        if any(
            not np.array_equal(a, b)
            for a, b in zip(again.integer_planes(), decoded.integer_planes(), strict=True)
        ):
            raise RuntimeError(f"{bitstream}: `coolchic decode` differs from the encoder's picture")
        notes.append("decode verified")
        if not settings.keep_decoded:
            check_path.unlink(missing_ok=True)
    if not settings.keep_decoded:
        decoded_path.unlink(missing_ok=True)
    measured = frame_metrics(source.frame, decoded).as_dict()[source.metric]
    if abs(measured - report[source.metric]) > 1e-6:
        notes.append(f"report {source.metric}={report[source.metric]:.4f} differs")
    return Point(
        codec=codec,
        setting=f"lmbda={lmbda}",
        bits=bits,
        decoded=decoded,
        encode_seconds=float(report["encode_seconds"]),
        decode_seconds=float(report["decode_seconds"]),
        encode_wall_seconds=wall,
        decode_wall_seconds=decode_wall,
        notes="; ".join(notes),
    )


def _read_decoded(source: Source, path: Path) -> Frame:
    if source.kind == "rgb":
        from coolchic.io import read_png

        return read_png(path)
    return read_raw_frame(path, source.frame)


def _raw_input(source: Source, work: Path) -> Path:
    """The first frame in coding order, written once per input (shared by x265 and aomenc)."""
    path = work.parent / f"frame0_{source.kind}_{source.bit_depth}b.raw"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        write_raw(tmp, source.coded_planes(), source.bit_depth)
        os.replace(tmp, path)
    return path


def run_x265(source: Source, qp: str, work: Path, runner: Runner, settings: Settings) -> Point:
    point = x265_point(
        source.frame,
        int(qp),
        work,
        raw_input=_raw_input(source, work),
        threads=settings.threads,
        fps=source.fps,
        run=runner.run,
        output=runner.output,
    )
    return Point(
        codec="x265",
        setting=f"qp={qp}",
        bits=point.bits,
        decoded=point.decoded,
        encode_seconds=point.encode_seconds,
        decode_seconds=point.decode_seconds,
        notes=f"{point.profile}; ffmpeg pix_fmt {point.pix_fmt}",
    )


def run_av1(source: Source, cq: str, work: Path, runner: Runner, settings: Settings) -> Point:
    raw = _raw_input(source, work)
    depth = source.bit_depth
    is_444 = source.kind in ("yuv444", "rgb")
    stream = work / f"cq{cq}.obu"
    command: list[Any] = [
        "aomenc",
        "--allintra",
        f"--cpu-used={settings.aom_cpu_used}",
        "--end-usage=q",
        f"--cq-level={cq}",
        "--limit=1",
        "--deltaq-mode=0",
        "--tune=psnr",
        f"--threads={settings.threads}",
        f"--width={source.width}",
        f"--height={source.height}",
        "--i444" if is_444 else "--i420",
        f"--profile={1 if is_444 else 0}",
        f"--input-bit-depth={depth}",
        f"--bit-depth={depth}",
    ]
    if source.kind == "rgb":
        command += [
            "--color-primaries=bt709",
            "--transfer-characteristics=srgb",
            "--matrix-coefficients=identity",
        ]
    command += ["--obu", "--quiet", "-o", stream, raw]
    encode_s = runner.run(command)
    decoded_path = work / f"cq{cq}_decoded.raw"
    decode_s = runner.run(
        [
            *("aomdec", "--rawvideo", f"--output-bit-depth={depth}"),
            *(f"--threads={settings.threads}", "-o", decoded_path, stream),
        ]
    )
    planes = read_raw(decoded_path, source.plane_shapes(), depth)
    if not settings.keep_decoded:
        decoded_path.unlink(missing_ok=True)
    return Point(
        codec="av1",
        setting=f"cq={cq}",
        bits=8 * stream.stat().st_size,
        decoded=source.frame_from_coded(planes),
        encode_seconds=encode_s,
        decode_seconds=decode_s,
        notes=f"libaom allintra cpu-used={settings.aom_cpu_used}; profile {1 if is_444 else 0}",
    )


def run_jpeg(source: Source, quality: str, work: Path, runner: Runner, settings: Settings) -> Point:
    from PIL import Image

    del runner
    if source.bit_depth != 8:
        raise Skip("JPEG (libjpeg via Pillow) is 8-bit only")
    if source.kind == "rgb":
        image = Image.fromarray(np.stack(source.frame.integer_planes(), axis=-1), "RGB")
        subsampling = 2 if settings.jpeg_subsampling == "420" else 0
        note = f"RGB input, libjpeg JFIF conversion, 4:{settings.jpeg_subsampling[1:]}"
    else:
        y, u, v = source.frame.integer_planes()
        if source.kind == "yuv420":
            u, v = _upsample(u), _upsample(v)
        image = Image.merge("YCbCr", [Image.fromarray(p, "L") for p in (y, u, v)])
        subsampling = 2 if source.kind == "yuv420" else 0
        note = "Y'CbCr planes coded directly, " + ("4:2:0" if subsampling else "4:4:4")
    start = time.perf_counter()
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=int(quality), subsampling=subsampling, optimize=True)
    data = buffer.getvalue()
    encode_s = time.perf_counter() - start
    (work / f"q{quality}.jpg").write_bytes(data)

    start = time.perf_counter()
    if source.kind == "rgb":
        with Image.open(io.BytesIO(data)) as decoded_image:
            rgb = np.asarray(decoded_image.convert("RGB"))
        decoded = Frame.from_integer_planes(
            (rgb[..., 0], rgb[..., 1], rgb[..., 2]), fmt="rgb", bit_depth=8
        )
    else:
        with Image.open(io.BytesIO(data)) as full:
            full.draft("YCbCr", None)  # no colour conversion: the decoder's Y'CbCr
            ycc = np.asarray(full)
        luma = np.ascontiguousarray(ycc[..., 0])
        chroma_u, chroma_v = ycc[..., 1], ycc[..., 2]
        if source.kind == "yuv420":
            half = (source.width // 2, source.height // 2)
            with Image.open(io.BytesIO(data)) as small:
                small.draft("YCbCr", half)  # 1/2-scale decode: chroma at its coded size
                if small.size != half:
                    raise RuntimeError(f"1/2-scale JPEG decode gave {small.size}, expected {half}")
                small_ycc = np.asarray(small)
            chroma_u, chroma_v = small_ycc[..., 1], small_ycc[..., 2]
        decoded = Frame.from_integer_planes(
            (luma, np.ascontiguousarray(chroma_u), np.ascontiguousarray(chroma_v)),
            fmt=source.kind,  # type: ignore[arg-type]
            bit_depth=8,
        )
    decode_s = time.perf_counter() - start
    return Point(
        "jpeg", f"quality={quality}", 8 * len(data), decoded, encode_s, decode_s, notes=note
    )


def run_webp(source: Source, quality: str, work: Path, runner: Runner, settings: Settings) -> Point:
    from PIL import Image

    del runner, settings
    if source.bit_depth != 8:
        raise Skip("WebP is 8-bit only")
    if source.kind == "rgb":
        rgb = np.stack(source.frame.integer_planes(), axis=-1)
        note = "RGB input"
    else:
        rgb = yuv8_to_rgb(source)
        note = "YUV input via RGB (BT.601 limited range); see webp_conversion_floor_psnr"
    image = Image.fromarray(rgb, "RGB")
    start = time.perf_counter()
    buffer = io.BytesIO()
    image.save(buffer, "WEBP", quality=int(quality), method=6, lossless=False)
    data = buffer.getvalue()
    encode_s = time.perf_counter() - start
    (work / f"q{quality}.webp").write_bytes(data)
    start = time.perf_counter()
    with Image.open(io.BytesIO(data)) as decoded_image:
        decoded_rgb = np.asarray(decoded_image.convert("RGB"))
    decode_s = time.perf_counter() - start
    if source.kind == "rgb":
        decoded = Frame.from_integer_planes(
            (decoded_rgb[..., 0], decoded_rgb[..., 1], decoded_rgb[..., 2]), fmt="rgb", bit_depth=8
        )
    else:
        decoded = rgb_to_yuv8(source, decoded_rgb)
    return Point(
        "webp", f"quality={quality}", 8 * len(data), decoded, encode_s, decode_s, notes=note
    )


CodecFunction = Callable[[Source, str, Path, Runner, Settings], Point]
CODEC_FUNCTIONS: dict[str, CodecFunction] = {
    "coolchic": run_coolchic,
    "x265": run_x265,
    "av1": run_av1,
    "jpeg": run_jpeg,
    "webp": run_webp,
}


# ============================================================================================
# Tools, versions, machine


def missing_tools(codecs: Sequence[str]) -> dict[str, list[str]]:
    missing = {}
    for codec in codecs:
        absent = [tool for tool in TOOLS.get(codec, ()) if shutil.which(tool) is None]
        if absent:
            missing[codec] = absent
    if "webp" in codecs:
        from PIL import features

        if not features.check("webp"):
            missing["webp"] = ["Pillow built with WebP support"]
    return missing


def _version_from(command: Sequence[str], pattern: str) -> str:
    """The first capture group of ``pattern`` in the command's output."""
    try:
        result = subprocess.run(
            list(command), capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
        )
    except OSError:
        return "not installed"
    match = re.search(pattern, result.stdout + "\n" + result.stderr)
    return match.group(1) if match else "unknown"


def tool_versions(codecs: Sequence[str]) -> dict[str, str]:
    from PIL import Image, features

    versions = {"python": platform.python_version(), "pillow": Image.__version__}
    if "coolchic" in codecs:
        import coolchic

        versions["coolchic"] = coolchic.__version__
        try:
            import torch

            versions["torch"] = torch.__version__
        except ImportError:
            pass
    if "x265" in codecs:
        versions["x265"] = _version_from(["x265", "--version"], r"encoder version (\S+)")
        versions["ffmpeg"] = _version_from(["ffmpeg", "-version"], r"ffmpeg version (\S+)")
    if "av1" in codecs:
        versions["libaom"] = _version_from(["aomenc", "--help"], r"AV1 Encoder (\S+)")
    if "jpeg" in codecs:
        versions["libjpeg"] = str(features.version("jpg"))
        turbo = features.version("libjpeg_turbo")
        if turbo:
            versions["libjpeg-turbo"] = str(turbo)
    if "webp" in codecs:
        versions["libwebp"] = str(features.version("webp"))
    versions["numpy"] = np.__version__
    if scipy_available():
        import scipy

        versions["scipy"] = scipy.__version__
    return versions


def machine_description() -> dict[str, Any]:
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "system": f"{platform.system()} {platform.release()}",
        "hostname": platform.node(),
    }


# ============================================================================================
# Reporting


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}"


def tsv_row(source: Source, point: Point) -> dict[str, str]:
    values = measure(source, point.decoded)
    return {
        "input": source.label,
        "codec": point.codec,
        "setting": point.setting,
        "bits": str(point.bits),
        "bpp": _fmt(point.bits / source.n_pixels, 6),
        "psnr": _fmt(values["psnr"]),
        "psnr_y": _fmt(values.get("psnr_y")),
        "encode_seconds": _fmt(point.encode_seconds, 3),
        "decode_seconds": _fmt(point.decode_seconds, 3),
        "metric": source.metric,
        "psnr_u": _fmt(values.get("psnr_u")),
        "psnr_v": _fmt(values.get("psnr_v")),
        "psnr_r": _fmt(values.get("psnr_r")),
        "psnr_g": _fmt(values.get("psnr_g")),
        "psnr_b": _fmt(values.get("psnr_b")),
        "encode_wall_seconds": _fmt(point.encode_wall_seconds, 3),
        "decode_wall_seconds": _fmt(point.decode_wall_seconds, 3),
        "notes": point.notes,
    }


def curves(rows: Sequence[dict[str, str]]) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """input → codec → (bpp list, psnr list)."""
    out: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    for row in rows:
        rates, psnrs = out.setdefault(row["input"], {}).setdefault(row["codec"], ([], []))
        rates.append(float(row["bpp"]))
        psnrs.append(float(row["psnr"]))
    return out


def plot_input(
    title: str,
    metric: str,
    codec_curves: dict[str, tuple[list[float], list[float]]],
    bd: dict[str, BdRate],
    path: Path,
) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axes = plt.subplots(figsize=(7, 5), dpi=120)
    markers = {"coolchic": "o", "x265": "s", "av1": "^", "jpeg": "v", "webp": "D"}
    for codec, (rates, psnrs) in codec_curves.items():
        order = np.argsort(rates)
        name = codec
        if codec in bd:
            value = bd[codec].percent
            name += f"  (coolchic BD-rate {'n/a' if value is None else f'{value:+.1f} %'})"
        axes.plot(
            np.array(rates)[order],
            np.array(psnrs)[order],
            marker=markers.get(codec.split("-")[0], "x"),
            linewidth=2.0 if codec.startswith("coolchic") else 1.2,
            label=name,
        )
    axes.set_xlabel("rate (bits per pixel)")
    axes.set_ylabel(f"{metric} (dB)")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8, loc="best")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return True


# ============================================================================================
# Main


def _list(text: str, kind: type = float) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    for item in items:
        kind(item)  # validate
    return items


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Install: " + INSTALL_COMMAND + '; pip install -e ".[benchmarks]"',
    )
    parser.add_argument("--inputs", nargs="+", type=Path, help=".yuv or .png files")
    parser.add_argument(
        "--recipe",
        default="fast",
        choices=["instant", "faster", "fast", "medium", "slow", "placebo"],
    )
    parser.add_argument(
        "--lmbdas",
        default=",".join(f"{value:g}" for value in DEFAULT_LMBDAS),
        help="comma-separated λ for coolchic (default: %(default)s, from Cool-chic's published "
        "grid)",
    )
    parser.add_argument(
        "--x265-qps", default=",".join(map(str, DEFAULT_X265_QPS)), help="default: %(default)s"
    )
    parser.add_argument(
        "--av1-cq", default=",".join(map(str, DEFAULT_AV1_CQ)), help="default: %(default)s"
    )
    parser.add_argument(
        "--jpeg-qualities",
        default=",".join(map(str, DEFAULT_JPEG_QUALITIES)),
        help="default: %(default)s",
    )
    parser.add_argument(
        "--webp-qualities",
        default=",".join(map(str, DEFAULT_WEBP_QUALITIES)),
        help="default: %(default)s",
    )
    parser.add_argument(
        "--jpeg-subsampling",
        choices=["420", "444"],
        default="420",
        help="chroma subsampling of JPEG on RGB inputs (YUV inputs keep their own)",
    )
    parser.add_argument(
        "--aom-cpu-used",
        type=int,
        default=0,
        choices=range(10),
        metavar="0-9",
        help="libaom speed (default: %(default)s, the slowest and best)",
    )
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="CODEC",
        help=f"codec(s) to leave out, repeatable or comma-separated: {', '.join(CODECS)}",
    )
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/<timestamp>/")
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="threads given to every codec (default: %(default)s, all CPUs)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="codec runs in parallel (default 1: timings are only comparable when sequential)",
    )
    parser.add_argument("--seed", type=int, help="coolchic's seed (default: 0)")
    parser.add_argument(
        "--seeds",
        help="comma-separated seeds instead of --seed: one coolchic curve per seed, each with "
        "its BD-rates, and their mean with its standard error (at 192x128 one seed's BD-rate "
        "moves by several points)",
    )
    parser.add_argument("--device", default="cpu", help="coolchic's device (default: cpu)")
    parser.add_argument(
        "--coolchic-args",
        default="",
        help="more options for every coolchic encode, e.g. '--ifce-features 2 --hyper-grids 3'",
    )
    parser.add_argument(
        "--bd-min-points",
        type=int,
        default=4,
        help="RD points each curve needs for a BD-rate (default: %(default)s)",
    )
    parser.add_argument(
        "--no-verify-decode",
        dest="verify_decode",
        action="store_false",
        help="do not re-decode coolchic streams with `coolchic decode` (bit-exactness check)",
    )
    parser.add_argument(
        "--keep-decoded", action="store_true", help="keep the decoded pictures under work/"
    )
    parser.add_argument("--self-test", action="store_true", help="check the BD-rate code and exit")
    parser.add_argument(
        "--check-tools", action="store_true", help="print the codecs found and their versions"
    )
    parser.add_argument(
        "--resummarise",
        type=Path,
        metavar="DIR",
        help="recompute BD-rates, summary.json and plots from DIR/rd.tsv of an earlier run "
        "(e.g. with another --bd-min-points) and exit",
    )
    args = parser.parse_args(argv)
    if args.self_test or args.resummarise or args.check_tools:
        return args
    if not args.inputs:
        parser.error("--inputs is required (or --self-test)")
    skipped = {item.strip() for text in args.skip for item in text.split(",") if item.strip()}
    unknown = skipped - set(CODECS)
    if unknown:
        parser.error(f"--skip: unknown codec(s) {', '.join(sorted(unknown))}; known: {CODECS}")
    args.codecs = [codec for codec in CODECS if codec not in skipped]
    if not args.codecs:
        parser.error("every codec is skipped")
    if args.seeds is not None and args.seed is not None:
        parser.error("give --seed or --seeds, not both")
    try:
        seeds = [int(seed) for seed in _list(args.seeds, int)] if args.seeds else []
        if args.seeds is not None and (len(seeds) < 2 or len(set(seeds)) != len(seeds)):
            raise ValueError("--seeds needs two or more different seeds")
        lmbdas = _list(args.lmbdas, float)
        args.seed = 0 if args.seed is None else args.seed
        args.seed_list = seeds or [args.seed]
        args.settings = {
            "coolchic": [f"{lmbda}@{seed}" for seed in seeds for lmbda in lmbdas] or lmbdas,
            "x265": _list(args.x265_qps, int),
            "av1": _list(args.av1_cq, int),
            "jpeg": _list(args.jpeg_qualities, int),
            "webp": _list(args.webp_qualities, int),
        }
    except ValueError as error:
        parser.error(f"bad list of settings: {error}")
    if args.threads < 1 or args.jobs < 1:
        parser.error("--threads and --jobs must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.self_test:
        return self_test()
    if args.resummarise:
        return resummarise(args.resummarise, args.bd_min_points)
    if args.check_tools:
        missing = missing_tools(CODECS)
        for name, version in tool_versions([c for c in CODECS if c not in missing]).items():
            print(f"{name:>14}: {version}")
        for codec, tools in missing.items():
            print(f"{codec:>14}: MISSING {', '.join(tools)}")
        if missing:
            print(f"install with:  {INSTALL_COMMAND}")
        return 1 if missing else 0

    missing = missing_tools(args.codecs)
    if missing:
        for codec, tools in missing.items():
            print(f"error: {codec} needs {', '.join(tools)}, not found", file=sys.stderr)
        print(
            f"install with:  {INSTALL_COMMAND}\n"
            f"or leave them out with:  --skip {','.join(missing)}",
            file=sys.stderr,
        )
        return 2
    sources = []
    for path in args.inputs:
        try:
            sources.append(load_source(path))
        except Exception as error:
            print(f"error: {path}: {error}", file=sys.stderr)
            return 2
    labels = [source.label for source in sources]
    if len(set(labels)) != len(labels):
        print("error: two inputs share a file stem", file=sys.stderr)
        return 2

    started = dt.datetime.now().astimezone()
    out = args.out or REPO_ROOT / "benchmarks" / "results" / started.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    runner = Runner(log_path=out / "commands.log", threads=args.threads)
    settings = Settings(
        recipe=args.recipe,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
        aom_cpu_used=args.aom_cpu_used,
        jpeg_subsampling=args.jpeg_subsampling,
        verify_decode=args.verify_decode,
        keep_decoded=args.keep_decoded,
        coolchic_args=tuple(shlex.split(args.coolchic_args)),
    )
    print(f"results in {out}", file=sys.stderr)

    tasks = [
        (source, codec, setting)
        for source in sources
        for codec in args.codecs
        for setting in args.settings[codec]
    ]
    rows: list[dict[str, str]] = []
    skipped: dict[str, str] = {}
    failures: list[str] = []
    tsv_path = out / "rd.tsv"
    with open(tsv_path, "w", newline="", encoding="utf-8") as tsv:
        writer = csv.DictWriter(tsv, fieldnames=TSV_COLUMNS, delimiter="\t", lineterminator="\n")
        writer.writeheader()

        def one(task: tuple[Source, str, str]) -> tuple[Source, str, str, Point | Exception]:
            source, codec, setting = task
            work = out / "work" / source.label / codec
            work.mkdir(parents=True, exist_ok=True)
            try:
                return (
                    source,
                    codec,
                    setting,
                    CODEC_FUNCTIONS[codec](source, setting, work, runner, settings),
                )
            except Exception as error:  # reported below, the run goes on
                return source, codec, setting, error

        with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for source, codec, setting, result in pool.map(one, tasks):
                key = f"{source.label} {codec}"
                if isinstance(result, Skip):
                    if key not in skipped:
                        print(f"skip {key}: {result}", file=sys.stderr)
                    skipped[key] = str(result)
                    continue
                if isinstance(result, Exception):
                    message = f"{key} {setting}: {result}"
                    failures.append(message)
                    print(f"FAILED {message}", file=sys.stderr)
                    continue
                row = tsv_row(source, result)
                rows.append(row)
                writer.writerow(row)
                tsv.flush()
                print(
                    f"{source.label:>28} {codec:>8} {result.setting:>14}  "
                    f"{float(row['bpp']):7.4f} bpp  {row['psnr']:>8} dB  "
                    f"enc {float(row['encode_seconds']):7.2f} s",
                    file=sys.stderr,
                )

    summary = summarise(args, sources, rows, skipped, failures, started, out)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print_summary(summary)
    print(f"\nwrote {tsv_path}, {out / 'summary.json'}", end="")
    plots = summary.get("plots", [])
    print(f", {len(plots)} plot(s)" if plots else " (no plots: matplotlib missing)")
    return 1 if failures else 0


def input_info(source: Source, codecs: Sequence[str]) -> dict[str, Any]:
    """What the summary says about an input besides its BD-rates."""
    info: dict[str, Any] = {
        "path": str(source.path),
        "format": source.kind,
        "bit_depth": source.bit_depth,
        "width": source.width,
        "height": source.height,
        "metric": source.metric,
    }
    if source.kind != "rgb" and source.bit_depth == 8 and "webp" in codecs:
        floor = rgb_to_yuv8(source, yuv8_to_rgb(source))
        info["webp_conversion_floor_psnr"] = measure(source, floor)["psnr"]
    return info


def coolchic_curves(
    codec_curves: dict[str, tuple[list[float], list[float]]],
) -> dict[int | None, tuple[list[float], list[float]]]:
    """coolchic's curve (key None), or one per seed of a ``--seeds`` run (key: the seed)."""
    if "coolchic" in codec_curves:
        return {None: codec_curves["coolchic"]}
    codecs = {
        int(match.group(1)): codec
        for codec in codec_curves
        if (match := SEED_CURVE.fullmatch(codec)) is not None
    }
    return {seed: codec_curves[codecs[seed]] for seed in sorted(codecs)}


def mean_over_seeds(results: dict[int, BdRate]) -> BdRate:
    """The mean BD-rate of several seeds' curves; n/a unless every seed's BD-rate is known (a
    mean over only the seeds whose curves happen to overlap the anchor would be biased)."""
    unknown = [f"seed {seed}: {one.reason}" for seed, one in results.items() if one.percent is None]
    ranges = [one.psnr_range for one in results.values() if one.psnr_range is not None]
    span = (min(low for low, _ in ranges), max(high for _, high in ranges)) if ranges else None
    return BdRate(
        percent=None if unknown else float(np.mean([one.percent for one in results.values()])),
        reason="; ".join(unknown),
        psnr_range=span,
        anchor_points=max(one.anchor_points for one in results.values()),
        test_points=min(one.test_points for one in results.values()),
    )


def standard_error(values: Sequence[float | None]) -> float | None:
    """Standard error of the mean of ``values`` (None if any is unknown or fewer than two)."""
    if len(values) < 2 or any(value is None for value in values):
        return None
    return float(np.std(np.array(values, dtype=float), ddof=1) / math.sqrt(len(values)))


def bd_results(
    rows: Sequence[dict[str, str]],
    infos: dict[str, dict[str, Any]],
    min_points: int,
    out: Path,
    recipe: str,
) -> dict[str, Any]:
    """Per-input BD-rates of coolchic against each reference, their means, and the plots."""
    by_input = curves(rows)
    results: dict[str, Any] = {}
    plots = []
    metrics = {row["input"]: row["metric"] for row in rows}
    for label in dict.fromkeys([*infos, *by_input]):
        codec_curves = by_input.get(label, {})
        entry = dict(infos.get(label, {}))
        entry.setdefault("metric", metrics.get(label, "psnr"))
        bd: dict[str, BdRate] = {}
        by_seed: dict[str, dict[int, BdRate]] = {}
        tests = coolchic_curves(codec_curves)
        for reference in REFERENCES:
            if reference in codec_curves and tests:
                anchor = codec_curves[reference]
                per_curve = {
                    seed: bd_rate(*anchor, *curve, min_points=min_points)
                    for seed, curve in tests.items()
                }
                if None in per_curve:
                    bd[reference] = per_curve[None]
                else:
                    by_seed[reference] = {
                        seed: one for seed, one in per_curve.items() if seed is not None
                    }
                    bd[reference] = mean_over_seeds(by_seed[reference])
        entry["points"] = {codec: len(curve[0]) for codec, curve in codec_curves.items()}
        entry["bd_rate_coolchic_vs"] = {}
        for reference, result in bd.items():
            entry["bd_rate_coolchic_vs"][reference] = {
                "percent": result.percent,
                "reason": result.reason or None,
                "psnr_range": result.psnr_range,
                "anchor_points": result.anchor_points,
                "coolchic_points": result.test_points,
            }
            if reference in by_seed:
                entry["bd_rate_coolchic_vs"][reference].update(
                    per_seed={str(seed): one.percent for seed, one in by_seed[reference].items()},
                    standard_error=standard_error(
                        [one.percent for one in by_seed[reference].values()]
                    ),
                )
        plot_path = out / f"rd_{label}.png"
        title = f"{label} (coolchic recipe {recipe})"
        if codec_curves and plot_input(title, entry["metric"], codec_curves, bd, plot_path):
            plots.append(plot_path.name)
        results[label] = entry
    averages = {}
    for reference in REFERENCES:
        values = [
            entry["bd_rate_coolchic_vs"][reference]["percent"]
            for entry in results.values()
            if reference in entry["bd_rate_coolchic_vs"]
            and entry["bd_rate_coolchic_vs"][reference]["percent"] is not None
        ]
        if values:
            averages[reference] = {"mean_percent": float(np.mean(values)), "inputs": len(values)}
    return {
        "bd_rate_method": (
            "Bjøntegaard delta rate, Pareto front of each curve, PCHIP of log(bpp) over PSNR, "
            f"overlapping PSNR interval, >= {max(2, min_points)} points per curve; "
            + ("scipy PchipInterpolator" if scipy_available() else "own PCHIP")
        ),
        "inputs": results,
        "mean_bd_rate_coolchic_vs": averages,
        "plots": plots,
    }


def summarise(
    args: argparse.Namespace,
    sources: Sequence[Source],
    rows: Sequence[dict[str, str]],
    skipped: dict[str, str],
    failures: list[str],
    started: dt.datetime,
    out: Path,
) -> dict[str, Any]:
    infos = {source.label: input_info(source, args.codecs) for source in sources}
    return {
        "date": started.isoformat(timespec="seconds"),
        "command": shlex.join([sys.executable, *sys.argv]),
        "machine": machine_description(),
        "versions": tool_versions(args.codecs),
        "recipe": args.recipe,
        "seeds": args.seed_list,
        "threads": args.threads,
        "jobs": args.jobs,
        "settings": {codec: args.settings[codec] for codec in args.codecs},
        **bd_results(rows, infos, args.bd_min_points, out, args.recipe),
        "skipped": skipped,
        "failures": failures,
    }


def resummarise(directory: Path, min_points: int) -> int:
    """Recompute the BD-rates, summary.json and the plots of an earlier run from its rd.tsv."""
    tsv_path = directory / "rd.tsv"
    if not tsv_path.is_file():
        print(f"error: {tsv_path} not found", file=sys.stderr)
        return 2
    with open(tsv_path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    summary_path = directory / "summary.json"
    summary: dict[str, Any] = {}
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    keep = ("path", "format", "bit_depth", "width", "height", "metric")
    infos = {
        label: {key: entry[key] for key in (*keep, "webp_conversion_floor_psnr") if key in entry}
        for label, entry in summary.get("inputs", {}).items()
    }
    summary.setdefault("recipe", "?")
    summary.update(bd_results(rows, infos, min_points, directory, summary["recipe"]))
    summary.setdefault("failures", [])
    summary["resummarised"] = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": shlex.join([sys.executable, *sys.argv]),
    }
    summary_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print_summary(summary)
    print(f"\nrewrote {summary_path} and {len(summary['plots'])} plot(s)")
    return 0


def print_summary(summary: dict[str, Any]) -> None:
    print(f"\nBD-rate of coolchic (recipe {summary['recipe']}) against each reference")
    print("(negative = coolchic needs fewer bits for the same PSNR)\n")
    header = f"{'input':<36} {'metric':<9} {'reference':<9} {'BD-rate':>10}  PSNR range / note"
    print(header)
    print("-" * len(header))
    for label, entry in summary["inputs"].items():
        if not entry["bd_rate_coolchic_vs"]:
            print(f"{label:<36} {entry['metric']:<9} (no coolchic or reference curve)")
        for reference, result in entry["bd_rate_coolchic_vs"].items():
            if result["percent"] is None:
                value, note = "n/a", result["reason"]
            else:
                value = f"{result['percent']:+.2f} %"
                lo, hi = result["psnr_range"]
                note = f"{lo:.2f}-{hi:.2f} dB"
                if hi - lo < 1.0:
                    note += " (overlap < 1 dB: unreliable)"
            note += f" ({result['coolchic_points']} vs {result['anchor_points']} points)"
            if "per_seed" in result:
                error = result["standard_error"]
                note += f"; mean of {len(result['per_seed'])} seeds" + (
                    f", standard error {error:.2f}" if error is not None else ""
                )
                note += ": " + ", ".join(
                    f"{seed} {'n/a' if one is None else f'{one:+.2f}'}"
                    for seed, one in result["per_seed"].items()
                )
            print(f"{label:<36} {entry['metric']:<9} {reference:<9} {value:>10}  {note}")
        if "webp_conversion_floor_psnr" in entry:
            print(
                f"{'':<36} webp via RGB: conversion alone caps PSNR at "
                f"{entry['webp_conversion_floor_psnr']:.2f} dB"
            )
    for reference, mean in summary["mean_bd_rate_coolchic_vs"].items():
        print(f"mean over {mean['inputs']} input(s) vs {reference}: {mean['mean_percent']:+.2f} %")
    for message in summary["failures"]:
        print(f"FAILED: {message}")


if __name__ == "__main__":
    sys.exit(main())
