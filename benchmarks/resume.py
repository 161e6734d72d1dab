"""Kill an encode half-way, start it again, and compare with a plain run.

Measures what the resume costs and checks that it changes nothing: the same input is encoded
once with ``coolchic encode`` (uninterrupted, no checkpoint), then, for each of ``--modes``:

- ``watch``: dropped into a fresh inbox of a ``coolchic watch`` daemon;
- ``batch``: encoded by ``coolchic batch`` on a folder holding it;
- ``encode``: encoded by ``coolchic encode --checkpoint PATH``;

whose process is killed with SIGKILL at ``--kill-at`` of the uninterrupted time and started
again (the same command). Prints the wall times, the extra time, and whether the streams are
byte-identical.

    python benchmarks/resume.py INPUT.yuv --recipe fast --threads 2 --modes watch,batch,encode
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
    parser.add_argument("--modes", default="watch", help="comma-separated: watch,batch,encode")
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
        results = []
        for mode in args.modes.split(","):
            folder = work / mode
            folder.mkdir()
            figures = interrupted_run(mode, args, folder, plain_s)
            figures["byte_identical"] = figures.pop("stream") == plain_cool.read_bytes()
            print(json.dumps(figures), flush=True)
            results.append(figures)
        summary = {
            "input": str(args.input),
            "recipe": args.recipe,
            "threads": args.threads,
            "plain_s": round(plain_s, 1),
            "runs": results,
        }
        print(json.dumps(summary, indent=2))
        if args.json:
            args.json.write_text(json.dumps(summary, indent=2) + "\n")
        if not all(run["byte_identical"] for run in results):
            raise SystemExit("a resumed stream differs from the uninterrupted one")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def interrupted_run(mode: str, args: argparse.Namespace, work: Path, plain_s: float) -> dict:
    """Run ``mode``, SIGKILL it at ``args.kill_at`` of ``plain_s``, run it again to the end."""
    stem = args.input.stem
    common = ["--recipe", args.recipe]
    if mode == "watch":
        inbox, output, state = work / "inbox", work / "out", work / "state"
        inbox.mkdir()
        command = coolchic(args.threads, "-q", "watch", str(inbox), "--output", str(output))
        command += ["--state-dir", str(state), *common, "--stable-seconds", "0.2"]
        checkpoints = state / "checkpoints"
        cool = output / f"{stem}.cool"
        shutil.copy(args.input, work / args.input.name)
        prepare = lambda: (work / args.input.name).rename(inbox / args.input.name)  # noqa: E731
    elif mode == "batch":
        folder, output = work / "in", work / "out"
        folder.mkdir()
        shutil.copy(args.input, folder / args.input.name)
        command = coolchic(args.threads, "-q", "batch", str(folder), "--output", str(output))
        command += common
        checkpoints = output / ".coolchic-checkpoints"
        cool = output / f"{stem}.cool"
        prepare = lambda: None  # noqa: E731
    elif mode == "encode":
        cool, checkpoint = work / f"{stem}.cool", work / "encode.ckpt"
        command = coolchic(args.threads, "-q", "encode", str(args.input), "-o", str(cool))
        command += [*common, "--checkpoint", str(checkpoint)]
        checkpoints = work
        prepare = lambda: None  # noqa: E731
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    log = open(work / "run.log", "ab")  # noqa: SIM115  (closed below)
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=log, stderr=log)
    prepare()
    time.sleep(args.kill_at * plain_s)
    saved = [p for p in checkpoints.rglob("*") if p.suffix in (".pt", ".ckpt")]
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = time.perf_counter() - started
    process = subprocess.Popen(command, stdout=log, stderr=log)
    if mode == "watch":
        wait_for(cool.with_suffix(".json").exists, 20 * plain_s, "the resumed encode")
        process.send_signal(signal.SIGTERM)
    process.wait(20 * plain_s)
    total_s = time.perf_counter() - started
    log.close()
    return {
        "mode": mode,
        "killed_at_s": round(killed_at, 1),
        "checkpoints_at_kill": len(saved),
        "interrupted_total_s": round(total_s, 1),
        "extra_s": round(total_s - plain_s, 1),
        "stream": cool.read_bytes(),
    }


if __name__ == "__main__":
    main()
