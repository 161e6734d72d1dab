"""Kill a ``watch`` daemon half-way through an encode, restart it, and compare with a plain run.

Measures what the resume costs and checks that it changes nothing: the same input is encoded
once with ``coolchic encode`` (uninterrupted, no checkpoint), then dropped into a fresh inbox of
a ``coolchic watch`` daemon that is killed with SIGKILL at ``--kill-at`` of the uninterrupted
time and started again. Prints both wall times, the extra time, and whether the two streams
are byte-identical.

    python benchmarks/resume.py INPUT.yuv --recipe fast --threads 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def coolchic(threads: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "coolchic", "--threads", str(threads), *args]


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path)
    parser.add_argument("--recipe", default="fast")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--kill-at", type=float, default=0.5, help="fraction of the plain time")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="coolchic-resume-"))
    try:
        plain_cool = work / "plain.cool"
        started = time.perf_counter()
        encode = ["-q", "encode", str(args.input), "-o", str(plain_cool), "--recipe", args.recipe]
        subprocess.run(coolchic(args.threads, *encode), check=True)
        plain_s = time.perf_counter() - started
        print(f"uninterrupted encode: {plain_s:.1f} s", flush=True)

        inbox, output, state = work / "inbox", work / "out", work / "state"
        inbox.mkdir()
        shutil.copy(args.input, work / args.input.name)
        watch = coolchic(args.threads, "-q", "watch", str(inbox), "--output", str(output))
        watch += ["--state-dir", str(state), "--recipe", args.recipe, "--stable-seconds", "0.2"]
        log = open(work / "daemon.log", "ab")  # noqa: SIM115  (closed at the end)
        started = time.perf_counter()
        daemon = subprocess.Popen(watch, stdout=log, stderr=log)
        (work / args.input.name).rename(inbox / args.input.name)
        time.sleep(args.kill_at * plain_s)
        checkpoints = list((state / "checkpoints").glob("*.pt"))
        daemon.send_signal(signal.SIGKILL)
        daemon.wait()
        killed_at = time.perf_counter() - started
        print(f"killed the daemon after {killed_at:.1f} s ({len(checkpoints)} checkpoint)")
        daemon = subprocess.Popen(watch, stdout=log, stderr=log)
        cool = output / (args.input.stem + ".cool")
        report = output / (args.input.stem + ".json")
        wait_for(report.exists, 20 * plain_s, "the resumed encode")
        total_s = time.perf_counter() - started
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(120)
        log.close()
        identical = cool.read_bytes() == plain_cool.read_bytes()
        figures = {
            "input": str(args.input),
            "recipe": args.recipe,
            "threads": args.threads,
            "plain_s": round(plain_s, 1),
            "killed_at_s": round(killed_at, 1),
            "interrupted_total_s": round(total_s, 1),
            "extra_s": round(total_s - plain_s, 1),
            "byte_identical": identical,
        }
        print(json.dumps(figures, indent=2))
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
        if not identical:
            raise SystemExit("the resumed stream differs from the uninterrupted one")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
