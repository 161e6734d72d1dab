"""coolchic against the official Cool-chic encoder, at equal wall time per point, in one run.

The official encoder (Orange's Cool-chic, 5.0.1 when this was written) is not vendored: the
script takes a fetched copy of its git repository (``--official-repo``, a git directory, bare or
not), exports its ``HEAD`` into a temporary folder, and runs it from there in a temporary
virtual environment that sees this machine's torch (``--system-site-packages``) and gets the
official requirements that intra coding imports: ``einops``, ``fvcore``, ``ConfigArgParse``
and ``constriction==0.4.2``. ``torchvision`` is replaced by a stub package (written into the
environment, listed in the summary) whose names raise when used: the official code imports it
only for RAFT optical flow (inter coding), a VGG-based Wasserstein loss (perceptual tuning) and
PNG loading, none of which a YUV intra encode with ``--tune mse`` calls. The official code
puts its ``coolchic`` package first on ``sys.path`` (its scripts run from its folder), so it
never sees this project's package of the same name.

For each input and λ:

1. coolchic encodes (``--recipe``, one process, ``--threads``) and its wall time T is measured;
2. the official encoder (``--official-cfg``, default ``lop``) encodes with ``--n_itr`` chosen so
   that its wall time matches T: per input, two short official runs (``--calibration``
   iterations) give its seconds per iteration and its fixed cost, and
   ``n_itr = (T − fixed) / per_iteration``, at least 2,000 (the official intra preset's
   minimum; ``--official-iterations`` fixes it instead); the ratio of the two wall times is
   printed and recorded, with a warning when it is outside ±15 %;

   with ``--match coolchic`` the other way round, for recipes shorter than the official
   minimum: the official encoder runs first (``--official-iterations``, default 2,000) and
   coolchic follows with ``--recipe`` stretched to as long by ``--iterations-scale``, chosen
   from its fixed seconds and seconds per unit of scale, measured per input by two short
   encodes (``--coolchic-calibration`` scales) and refined by each point as it finishes;
3. with ``--jobs 2`` two λ points run at a time (and the two calibration runs together), so
   that every encode of either encoder shares the machine with one other encode;
4. the official stream is decoded by its own ``cc_decode.py``; both reconstructions are scored
   by coolchic's metrics (4:2:0 PSNR = (4·MSE_Y + MSE_U + MSE_V)/6), bits = 8 × file size.

x265 ``--preset veryslow --tune psnr`` intra (``--x265-qps``) is run on the same inputs. The
BD-rates printed: coolchic against x265, the official against x265, coolchic against the
official (negative: coolchic needs fewer bits for the same PSNR).

    python benchmarks/vs_official.py --official-repo /path/to/Cool-Chic/.git \\
        --inputs a_416x240_01p_yuv420_8b.yuv b_416x240_01p_yuv420_8b.yuv \\
        --lmbdas 2e-4,1e-3,4e-3,1e-2 --recipe fast --threads 1 --jobs 2

Outputs in ``--out`` (default ``benchmarks/results/vs-official-<time>/``): ``points.tsv`` (one
row per input × encoder × setting), ``summary.json`` (BD-rates, time ratios, versions, the
stub) and ``commands.log``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(HERE.parent))

from coolchic.evaluation.bdrate import bd_rate  # noqa: E402
from coolchic.evaluation.x265 import DEFAULT_QPS, read_raw_frame, x265_point  # noqa: E402
from coolchic.io import Frame, frame_metrics, read_frame  # noqa: E402

#: What intra coding of a YUV file imports from the official requirements (torchvision is
#: stubbed, matplotlib, scipy and the test tools are not imported on that path).
OFFICIAL_REQUIREMENTS = ("einops", "fvcore", "ConfigArgParse", "constriction==0.4.2")

#: The official intra preset refuses fewer main-phase iterations (``--n_itr``).
OFFICIAL_MIN_ITERATIONS = 2000

#: The range of ``coolchic encode --iterations-scale``.
MIN_SCALE, MAX_SCALE = 0.1, 10.0

#: Two wall times within this factor of each other count as equal.
EQUAL_TIME = 1.15

#: The stub ``torchvision``: module path → source. Every name raises if it is ever used.
_STUB_BODY = (
    "def _unavailable(*args, **kwargs):\n"
    "    raise RuntimeError('torchvision is stubbed by benchmarks/vs_official.py')\n"
)
TORCHVISION_STUB = {
    "torchvision/__init__.py": _STUB_BODY + "from . import models, transforms\n",
    "torchvision/models/__init__.py": _STUB_BODY + "vgg16 = _unavailable\n",
    "torchvision/models/vgg.py": "class VGG16_Weights:\n    IMAGENET1K_V1 = None\n",
    "torchvision/models/optical_flow.py": _STUB_BODY
    + "raft_large = _unavailable\n\nclass Raft_Large_Weights:\n    DEFAULT = None\n",
    "torchvision/transforms/__init__.py": "from . import functional\n",
    "torchvision/transforms/functional.py": _STUB_BODY + "to_tensor = _unavailable\n",
}


@dataclass
class Point:
    input: str
    encoder: str
    setting: str
    bits: int
    bpp: float
    psnr: float
    seconds: float
    iterations: int | None = None


class Log:
    """Runs commands, each written to ``commands.log`` first."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def run(
        self,
        command: Sequence[str | Path],
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> float:
        """Run to completion; its wall time in seconds. Raises with its output on failure."""
        text = shlex.join(str(part) for part in command)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(f"{f'(cd {cwd}) ' if cwd else ''}{text}\n")
        start = time.perf_counter()
        done = subprocess.run(
            [str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True
        )
        seconds = time.perf_counter() - start
        if done.returncode:
            raise RuntimeError(f"{text} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return seconds


@dataclass
class Official:
    """The exported official code and the interpreter of its environment."""

    folder: Path
    python: Path
    commit: str
    threads: int
    log: Log

    def env(self) -> dict[str, str]:
        threads = str(self.threads)
        return {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}

    def encode(self, source: Path, lmbda: str, n_itr: int, cfg: str, work: Path) -> Path:
        stream = work / f"official_{cfg}_l{lmbda}_n{n_itr}.cool"
        workdir = work / f"official_{cfg}_l{lmbda}_n{n_itr}"
        workdir.mkdir(parents=True, exist_ok=True)
        command = [self.python, "cc_encode.py", "-i", source, "-o", stream]
        command += ["--workdir", workdir, "--lmbda", lmbda, "--n_itr", str(n_itr)]
        command += ["--dec_cfg_residue", f"cfg/dec/intra/{cfg}.cfg"]
        self.log.run(command, cwd=self.folder, env=self.env())
        return stream

    def decode(self, stream: Path, out: Path) -> None:
        command = [self.python, "cc_decode.py", "-i", stream, "-o", out]
        self.log.run(command, cwd=self.folder, env=self.env())


def set_up_official(repo: Path, work: Path, threads: int, log: Log) -> Official:
    """Export the official code, make its environment (torch shared, torchvision stubbed)."""
    folder = work / "official"
    folder.mkdir(parents=True)
    commit = subprocess.run(
        ["git", "--git-dir", str(repo), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    archive = subprocess.run(
        ["git", "--git-dir", str(repo), "archive", "HEAD"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    venv = work / "venv"
    log.run([sys.executable, "-m", "venv", "--system-site-packages", venv])
    python = venv / "bin" / "python"
    log.run([python, "-m", "pip", "install", "-q", *OFFICIAL_REQUIREMENTS])
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    for relative, source in TORCHVISION_STUB.items():
        path = Path(site) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    return Official(folder, python, commit, threads, log)


def score(
    source: Frame,
    decoded: Frame,
    label: str,
    encoder: str,
    setting: str,
    bits: int,
    seconds: float,
    iterations: int | None = None,
) -> Point:
    psnr = frame_metrics(source, decoded).as_dict()["psnr_yuv"]
    n_pixels = source.width * source.height
    return Point(label, encoder, setting, bits, bits / n_pixels, psnr, seconds, iterations)


def ours(
    path: Path,
    frame: Frame,
    lmbda: str,
    args: argparse.Namespace,
    work: Path,
    log: Log,
    scale: float = 1.0,
) -> Point:
    """coolchic at ``lmbda`` with ``--recipe``, every phase ``scale`` times as long."""
    name = f"coolchic_l{lmbda}" + ("" if scale == 1 else f"_x{scale:.3f}")
    stream, decoded, report = (work / f"{name}{suffix}" for suffix in (".cool", ".yuv", ".json"))
    command = [sys.executable, "-m", "coolchic", "-q", "--threads", str(args.threads)]
    command += ["--device", "cpu", "encode", path, "-o", stream, "--recipe", args.recipe]
    command += ["--iterations-scale", f"{scale:.3f}"]
    command += ["--lmbda", lmbda, "--seed", str(args.seed), "--report", report]
    command += ["--decoded", decoded, *shlex.split(args.coolchic_args)]
    seconds = log.run(command)
    iterations = json.loads(report.read_text(encoding="utf-8"))["iterations"]
    bits = 8 * stream.stat().st_size
    return score(
        frame,
        read_raw_frame(decoded, frame),
        path.stem,
        "coolchic",
        f"lmbda={lmbda}" + ("" if scale == 1 else f" x{scale:.2f}"),
        bits,
        seconds,
        iterations,
    )


def official_point(
    path: Path,
    frame: Frame,
    lmbda: str,
    n_itr: int,
    official: Official,
    args: argparse.Namespace,
    work: Path,
) -> Point:
    start = time.perf_counter()
    stream = official.encode(path, lmbda, n_itr, args.official_cfg, work)
    seconds = time.perf_counter() - start
    decoded = stream.with_suffix(".yuv")
    official.decode(stream, decoded)
    bits = 8 * stream.stat().st_size
    return score(
        frame,
        read_raw_frame(decoded, frame),
        path.stem,
        f"official-{args.official_cfg}",
        f"lmbda={lmbda}",
        bits,
        seconds,
        n_itr,
    )


def equal_time_pair(
    path: Path,
    frame: Frame,
    timing: tuple[float, float] | None,
    official: Official,
    args: argparse.Namespace,
    work: Path,
    log: Log,
    lmbda: str,
) -> tuple[Point, Point]:
    """coolchic at ``lmbda``, then the official encoder for as long.

    ``timing`` is the official encoder's (fixed seconds, seconds per iteration) from
    :func:`calibrate`; ``None`` runs it for ``--official-iterations``.
    """
    mine = ours(path, frame, lmbda, args, work, log)
    if timing is None:
        n_itr = args.official_iterations
    else:
        fixed, per_iteration = timing
        n_itr = max(OFFICIAL_MIN_ITERATIONS, round((mine.seconds - fixed) / per_iteration))
    return mine, official_point(path, frame, lmbda, n_itr, official, args, work)


class CoolchicTiming:
    """coolchic's wall time as ``fixed + per_unit · scale`` on one input, refined by every point.

    Starts from :func:`calibrate_ours`; each finished point replaces ``per_unit`` by the median
    of what the points measured, so that the later points of a run come nearer equal time.
    """

    def __init__(self, fixed: float, per_unit: float) -> None:
        self.fixed = fixed
        self.per_unit = per_unit
        self._measured: list[float] = []
        self._lock = threading.Lock()

    def scale_for(self, seconds: float) -> float:
        with self._lock:
            scale = (seconds - self.fixed) / self.per_unit
        return min(max(scale, MIN_SCALE), MAX_SCALE)

    def record(self, scale: float, seconds: float) -> None:
        with self._lock:
            self._measured.append(max(seconds - self.fixed, 1e-6) / scale)
            self.per_unit = statistics.median(self._measured)


def official_first_pair(
    path: Path,
    frame: Frame,
    timing: CoolchicTiming,
    official: Official,
    args: argparse.Namespace,
    work: Path,
    log: Log,
    lmbda: str,
) -> tuple[Point, Point]:
    """The official encoder at its fixed iterations, then coolchic for as long."""
    n_itr = args.official_iterations or OFFICIAL_MIN_ITERATIONS
    theirs = official_point(path, frame, lmbda, n_itr, official, args, work)
    scale = timing.scale_for(theirs.seconds)
    mine = ours(path, frame, lmbda, args, work, log, scale)
    timing.record(scale, mine.seconds)
    return mine, theirs


def calibrate_ours(
    path: Path, frame: Frame, lmbda: str, args: argparse.Namespace, work: Path, log: Log
) -> tuple[float, float]:
    """coolchic's fixed seconds and seconds per unit of ``--iterations-scale`` on this input."""
    low, high = args.coolchic_calibration
    calibration = work / "calibration"

    def timed(scale: float, repeat: int = 0) -> float:
        folder = calibration / str(repeat)
        folder.mkdir(parents=True, exist_ok=True)
        return ours(path, frame, lmbda, args, folder, log, scale).seconds

    if args.jobs == 1:
        times = [timed(low), timed(high)]
    else:
        # The long encode must share the machine from start to end, as the points do: beside
        # it the short one runs twice (the second run only keeps the machine loaded).
        with ThreadPoolExecutor(max_workers=1) as pool:
            long_run = pool.submit(timed, high)
            short = timed(low)
            if not long_run.done():
                timed(low, repeat=1)
            times = [short, long_run.result()]
    per_unit = max((times[1] - times[0]) / (high - low), 1e-6)
    return max(times[0] - low * per_unit, 0.0), per_unit


def calibrate(
    path: Path, lmbda: str, official: Official, args: argparse.Namespace, work: Path
) -> tuple[float, float]:
    """The official encoder's fixed seconds and seconds per iteration on this input."""
    low, high = args.calibration

    def timed(n_itr: int) -> float:
        start = time.perf_counter()
        official.encode(path, lmbda, n_itr, args.official_cfg, work / "calibration")
        return time.perf_counter() - start

    # Under the same load as the points: with --jobs 2 both runs share the machine too.
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        times = list(pool.map(timed, (low, high)))
    per_iteration = max((times[1] - times[0]) / (high - low), 1e-6)
    return max(times[0] - low * per_iteration, 0.0), per_iteration


def bd_table(points: list[Point], inputs: list[str]) -> list[dict[str, Any]]:
    rows = []
    for label in inputs:
        curves: dict[str, tuple[list[float], list[float]]] = {}
        for point in points:
            if point.input == label:
                rates, psnrs = curves.setdefault(point.encoder, ([], []))
                rates.append(point.bpp)
                psnrs.append(point.psnr)
        encoders = [name for name in curves if name != "x265"]
        pairs = [(name, "x265") for name in encoders]
        if len(encoders) == 2:
            pairs.append((encoders[0], encoders[1]))
        for test, anchor in pairs:
            result = bd_rate(*curves[anchor], *curves[test])
            rows.append(
                {
                    "input": label,
                    "test": test,
                    "anchor": anchor,
                    "bd_rate_percent": result.percent,
                    "psnr_range": result.psnr_range,
                    "note": result.reason,
                }
            )
    return rows


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--official-repo",
        type=Path,
        required=True,
        help="a fetched git copy of the official Cool-chic repository",
    )
    parser.add_argument(
        "--inputs",
        type=Path,
        nargs="+",
        required=True,
        help="YUV 4:2:0 files named <name>_<W>x<H>_<fps>p_yuv420_<bits>b.yuv",
    )
    parser.add_argument("--lmbdas", default="2e-4,1e-3,4e-3,1e-2")
    parser.add_argument("--recipe", default="fast")
    parser.add_argument(
        "--coolchic-args",
        default="",
        help="more options for every coolchic encode, e.g. '--arm-stabiliser'",
    )
    parser.add_argument("--official-cfg", default="lop", help="cfg/dec/intra/<name>.cfg")
    parser.add_argument("--threads", type=int, default=1, help="for every encoder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="λ points run at a time (each: coolchic, then the official encoder for as long); "
        "the calibration runs share the machine the same way",
    )
    parser.add_argument(
        "--calibration",
        type=int,
        nargs=2,
        default=(OFFICIAL_MIN_ITERATIONS, OFFICIAL_MIN_ITERATIONS + 500),
        metavar=("LOW", "HIGH"),
        help="official iterations of the two timing runs",
    )
    parser.add_argument(
        "--official-iterations",
        type=int,
        help="fixed official --n_itr for every point, no calibration (when its minimum, "
        "2,000, already takes longer than the recipe: give coolchic a longer recipe)",
    )
    parser.add_argument(
        "--match",
        choices=("official", "coolchic"),
        default="official",
        help="whose iterations are chosen to equal the other's time: 'official' runs coolchic "
        "first with --recipe; 'coolchic' runs the official encoder first (at "
        "--official-iterations, default its minimum) and stretches --recipe to as long with "
        "coolchic's --iterations-scale, from two calibration encodes per input",
    )
    parser.add_argument(
        "--coolchic-calibration",
        type=float,
        nargs=2,
        default=(0.25, 0.5),
        metavar=("LOW", "HIGH"),
        help="--iterations-scale of coolchic's two timing encodes (with --match coolchic)",
    )
    parser.add_argument("--x265-qps", default=",".join(map(str, DEFAULT_QPS)))
    parser.add_argument("--out", type=Path)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    out = args.out or HERE / "results" / f"vs-official-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    log = Log(out / "commands.log")
    points: list[Point] = []
    ratios: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="vs-official-") as scratch:
        official = set_up_official(args.official_repo.resolve(), Path(scratch), args.threads, log)
        for path in args.inputs:
            path = path.resolve()
            frame = read_frame(path)
            if frame.format != "yuv420":
                raise SystemExit(f"{path}: only YUV 4:2:0 inputs are compared")
            work = out / path.stem
            work.mkdir(exist_ok=True)
            lmbdas = args.lmbdas.split(",")
            if args.match == "coolchic":
                mine = CoolchicTiming(*calibrate_ours(path, frame, lmbdas[0], args, work, log))
                print(
                    f"{path.stem}: coolchic {mine.fixed:.1f} s + {mine.per_unit:.1f} s per unit "
                    "of scale"
                )
                point_pair = partial(
                    official_first_pair, path, frame, mine, official, args, work, log
                )
            else:
                timing = None
                if args.official_iterations is None:
                    timing = calibrate(path, lmbdas[0], official, args, Path(scratch))
                    print(f"{path.stem}: official {timing[0]:.1f} s + {1e3 * timing[1]:.1f} ms/it")
                point_pair = partial(
                    equal_time_pair, path, frame, timing, official, args, work, log
                )
            with ThreadPoolExecutor(max_workers=args.jobs) as pool:
                pairs = list(pool.map(point_pair, lmbdas))
            for mine, theirs in pairs:
                n_itr = theirs.iterations
                ratio = theirs.seconds / mine.seconds
                ratios.setdefault(path.stem, []).append(ratio)
                for point in (mine, theirs):
                    points.append(point)
                    print(
                        f"  {point.encoder:14} {point.setting:14} {point.bpp:.4f} bpp "
                        f"{point.psnr:.3f} dB {point.seconds:8.1f} s"
                    )
                print(f"  time official / coolchic: {ratio:.3f} ({n_itr} official iterations)")
                if not 1 / EQUAL_TIME <= ratio <= EQUAL_TIME:
                    print(f"  not equal time (±{EQUAL_TIME - 1:.0%})")
            for qp in args.x265_qps.split(","):
                anchor = x265_point(frame, int(qp), work, threads=args.threads)
                points.append(
                    score(
                        frame,
                        anchor.decoded,
                        path.stem,
                        "x265",
                        f"qp={qp}",
                        anchor.bits,
                        anchor.encode_seconds,
                    )
                )
        with open(out / "points.tsv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(asdict(points[0])), delimiter="\t")
            writer.writeheader()
            writer.writerows(asdict(point) for point in points)
        rows = bd_table(points, [path.resolve().stem for path in args.inputs])
        summary = {
            "date": stamp,
            "command": shlex.join(sys.argv),
            "official_commit": official.commit,
            "official_cfg": args.official_cfg,
            "match": args.match,
            "official_requirements": OFFICIAL_REQUIREMENTS,
            "stubbed": sorted(TORCHVISION_STUB),
            "time_ratios_official_over_coolchic": ratios,
            "bd_rates": rows,
        }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    print("\nBD-rate (negative: the test needs fewer bits for the same 4:2:0 PSNR)")
    for row in rows:
        value = "n/a" if row["bd_rate_percent"] is None else f"{row['bd_rate_percent']:+.2f} %"
        print(f"  {row['input']:40} {row['test']:14} vs {row['anchor']:14} {value} {row['note']}")
    print(f"results in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
