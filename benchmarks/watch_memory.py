"""``coolchic watch --jobs N`` under a memory limit: which encodes ran together, and their peaks.

Copies the given YUV files into a fresh inbox, starts the daemon with ``--memory-limit``, and
samples the resident memory of the daemon and of every worker process twice a second until
every file has its report. Prints each file's start and end (from the daemon's log), the peak
of each worker, the largest total at any instant, and whether any two encodes overlapped.

    python benchmarks/watch_memory.py --memory-limit 5G --jobs 2 --recipe instant \\
        big_3840x2160_01p_yuv420_8b.yuv small_1920x1080_01p_yuv420_8b.yuv
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from coolchic.decode_memory import format_bytes, parse_bytes


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        queue.extend(children.get(current, []))
    return found


def resident_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", type=Path)
    parser.add_argument("--memory-limit", required=True)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--recipe", default="instant")
    parser.add_argument("--timeout", type=float, default=3600.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="watch-memory-") as folder:
        inbox, output = Path(folder, "inbox"), Path(folder, "out")
        inbox.mkdir()
        for path in args.inputs:
            shutil.copyfile(path, inbox / (path.name + ".part"))
            os.rename(inbox / (path.name + ".part"), inbox / path.name)
        log_path = Path(folder, "watch.log")
        command = [
            sys.executable,
            "-m",
            "coolchic",
            "--memory-limit",
            args.memory_limit,
            "watch",
            str(inbox),
            "-o",
            str(output),
            "--jobs",
            str(args.jobs),
            "--recipe",
            args.recipe,
            "--stable-seconds",
            "0.5",
            "--on-success",
            "keep",
        ]
        print("$", " ".join(command), flush=True)
        started = time.monotonic()
        with log_path.open("w") as log:
            daemon = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        peaks: dict[int, int] = {}
        largest_total = 0
        expected = {path.stem for path in args.inputs}
        try:
            while time.monotonic() - started < args.timeout:
                sizes = {pid: resident_bytes(pid) for pid in descendants(daemon.pid)}
                for pid, size in sizes.items():
                    peaks[pid] = max(peaks.get(pid, 0), size)
                largest_total = max(largest_total, sum(sizes.values()))
                done = {path.stem for path in output.glob("*.json")}
                if expected <= done or daemon.poll() is not None:
                    break
                time.sleep(0.5)
        finally:
            daemon.send_signal(signal.SIGTERM)
            exit_code = daemon.wait(timeout=120)
        elapsed = time.monotonic() - started
        log_text = log_path.read_text()

    print(_key_lines(log_text))
    print(f"memory limit {args.memory_limit} ({format_bytes(parse_bytes(args.memory_limit))})")
    print(f"  daemon pid {daemon.pid}: peak {format_bytes(peaks.get(daemon.pid, 0))}")
    children = sorted(
        ((peak, pid) for pid, peak in peaks.items() if pid != daemon.pid), reverse=True
    )
    for peak, pid in children[:3]:
        print(f"  process pid {pid}: peak {format_bytes(peak)}")
    if len(children) > 3:  # the encode workers' short-lived helpers (torch.compile's workers)
        print(f"  {len(children) - 3} other processes, each at most {format_bytes(children[3][0])}")
    print(f"largest total at any instant: {format_bytes(largest_total)}")
    print(f"daemon exit code {exit_code}; {elapsed:.0f} s; outputs: {sorted(done)}")
    if not expected <= done:
        raise SystemExit("not every input was encoded")


def _key_lines(log_text: str) -> str:
    """The lines that show when each encode started, waited and ended."""
    keep = re.compile(r"encoding |waits for memory|memory|encoded|failed|error|expected time")
    return "\n".join(line for line in log_text.splitlines() if keep.search(line))


if __name__ == "__main__":
    main()
