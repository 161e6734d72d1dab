"""Rate control benchmark: how near ``--target-psnr``/``--target-bpp`` land, and at what cost.

Each job is one ``coolchic encode --target-METRIC VALUE`` of an input (run as the user runs
it, in its own process, ``--jobs`` at a time); its report (``OUT/<stem>-<metric>-<value>.json``)
holds every trial. A job whose report exists is not run again, so an interrupted run resumes.
The table gives, per job: the value achieved and its error, whether the target was met, the
trials, the λ found, the encode's time and its ratio to the first trial (a full encode of the
recipe, the time of one plain encode in the same process).

With ``--plain DIR`` (reports of plain ``--lmbda`` encodes of the same inputs and recipe,
e.g. from ``benchmarks/rd.py`` or ``coolchic batch --lmbda a,b,c,d``), each kept stream is also
placed against the plain RD curve: the rate the plain curve needs for the same PSNR
(log-rate interpolated in PSNR, as BD-rate does), and the targeted stream's rate against it.

Usage::

    python benchmarks/ratecontrol.py --data DIR --jobs-file jobs.txt --out OUT \\
        --recipe fast --threads 1 --jobs 2 [--plain PLAIN_DIR]

``jobs.txt`` has one job per line: ``INPUT METRIC VALUE`` (``kodim15.yuv psnr 34.5``), the
input relative to ``--data``.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coolchic.evaluation.bdrate import pareto_front, pchip_evaluate
from coolchic.evaluation.report import read_curves


@dataclass(frozen=True)
class Job:
    input_path: Path
    metric: str
    value: str

    @property
    def name(self) -> str:
        return f"{self.input_path.name.split('.')[0]}-{self.metric}-{self.value}"


def read_jobs(path: Path, data: Path) -> list[Job]:
    jobs = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, metric, value = line.split()
            if metric not in ("psnr", "bpp"):
                raise SystemExit(f"{path}: metric must be psnr or bpp, found {metric!r}")
            jobs.append(Job(data / name, metric, value))
    return jobs


def run_job(job: Job, out: Path, recipe: str, threads: int) -> dict:
    report_path = out / f"{job.name}.json"
    if not report_path.exists():
        command = [
            sys.executable,
            "-m",
            "coolchic",
            "-q",
            "--threads",
            str(threads),
            "encode",
            str(job.input_path),
            "-o",
            str(out / f"{job.name}.cool"),
            "--recipe",
            recipe,
            f"--target-{job.metric}",
            job.value,
            "--report",
            str(report_path),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return {"error": done.stderr.strip().splitlines()[-1:] or ["failed"]}
    return json.loads(report_path.read_text())


def plain_rate(plain: dict[str, tuple[np.ndarray, np.ndarray]], report: dict) -> float | None:
    """The rate the plain-λ curve of the same input needs at the report's PSNR (None outside
    its range)."""
    curve = plain.get(report.get("input_sha256", ""))
    if curve is None:
        return None
    rates, psnrs = curve
    psnr = report.get("psnr_yuv", report.get("psnr_rgb"))
    if len(psnrs) < 2 or not psnrs[0] <= psnr <= psnrs[-1]:
        return None
    return float(np.exp(pchip_evaluate(psnrs, np.log(rates), np.array([psnr]))[0]))


def print_trials(jobs: list[Job], reports: list[dict]) -> None:
    """Every trial of every job: λ, rate, PSNR, seconds, full or continued."""
    print()
    print(f"{'job':<44} {'#':>2} {'lambda':>10} {'bpp':>8} {'PSNR':>8} {'s':>7}  kind")
    for job, report in zip(jobs, reports, strict=True):
        for number, trial in enumerate(report.get("trials", []), start=1):
            print(
                f"{job.name:<44} {number:>2} {trial['lmbda']:10.4e} {trial['bpp']:8.4f} "
                f"{trial['psnr_db']:8.3f} {trial['seconds']:7.1f}  {trial['kind']}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs-file", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=Path("."))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--recipe", default="fast")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--plain", type=Path, help="reports of plain --lmbda encodes")
    parser.add_argument("--trials", action="store_true", help="also list every trial of each job")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = read_jobs(args.jobs_file, args.data)
    with ThreadPoolExecutor(args.jobs) as pool:
        reports = list(
            pool.map(lambda job: run_job(job, args.out, args.recipe, args.threads), jobs)
        )
    plain: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if args.plain is not None:
        for curve in read_curves(args.plain)[0]:
            if curve.recipe == args.recipe and curve.input_sha256:
                front = pareto_front([p.bpp for p in curve.points], [p.psnr for p in curve.points])
                plain[curve.input_sha256] = front

    header = (
        f"{'job':<44} {'achieved':>9} {'error':>8} {'met':>4} {'trials':>6} {'lambda':>9} "
        f"{'enc s':>7} {'1st s':>7} {'ratio':>5} {'vs plain':>8}"
    )
    print(header)
    print("-" * len(header))
    worst = {"psnr": 0.0, "bpp": 0.0}
    ratios = []
    for job, report in zip(jobs, reports, strict=True):
        if "error" in report:
            print(f"{job.name:<44} failed: {report['error'][0]}")
            continue
        target = report["target"]
        psnr = report.get("psnr_yuv", report.get("psnr_rgb"))
        if job.metric == "psnr":
            achieved, error = psnr, psnr - target["value"]
            shown = f"{achieved:9.3f} {error:+7.3f} "
        else:
            achieved, error = report["bpp"], report["bpp"] / target["value"] - 1
            shown = f"{achieved:9.4f} {100 * error:+7.2f}%"
        worst[job.metric] = max(worst[job.metric], abs(error))
        trials = report["trials"]
        ratio = report["encode_seconds"] / trials[0]["seconds"]
        ratios.append(ratio)
        reference = plain_rate(plain, report)
        versus = "" if reference is None else f"{100 * (report['bpp'] / reference - 1):+7.1f}%"
        print(
            f"{job.name:<44} {shown} {'yes' if target['met'] else 'no':>4} {len(trials):>6} "
            f"{report['lmbda']:9.3e} {report['encode_seconds']:7.1f} {trials[0]['seconds']:7.1f} "
            f"{ratio:5.2f} {versus:>8}"
        )
    if args.trials:
        print_trials(jobs, reports)
    print()
    print(
        f"largest error: {worst['psnr']:.3f} dB (PSNR targets), {100 * worst['bpp']:.2f} % "
        f"(rate targets); time against the first trial: mean {np.mean(ratios):.2f}x, "
        f"largest {max(ratios):.2f}x"
        if ratios and not math.isnan(float(np.mean(ratios)))
        else "no job finished"
    )


if __name__ == "__main__":
    main()
