"""Speed benchmark: training ms/iteration per size, decode time, post-training share of an encode.

(a) **Training speed.** For each ``--sizes`` entry, a synthetic YUV 4:2:0 8-bit frame is
    overfitted by the library's own :class:`coolchic.train.trainer.Trainer` with the default
    architecture (:func:`coolchic.codec.default_model_config`) and a tiny custom recipe: a
    one-candidate, one-iteration warm-up, then one ``softround`` phase over every module (the
    main phase of the real recipes: forward with the soft-round + noise proxy, MSE + λ·rate
    loss, backward, gradient clipping, Adam step) evaluated only at its end. To remove the fixed
    cost of a run (model initialisation, evaluations, state snapshots), each repeat times a short
    run and a long run and reports ``(T_long − T_short) / (N_long − N_short)``. The median over
    ``--repeats`` is reported (after one untimed warm-up run per size).
(b) **Decode time** of one stream: the ``--decode-input`` picture (default: a synthetic
    1152x768 YUV 4:2:0 8-bit frame) is encoded once in-process with ``--recipe`` (default
    ``instant``: decoding time does not depend on how long the encoder trained), then
    ``coolchic.decoder.decode(bytes)`` is timed in-process (one untimed warm-up, then the median
    of ``--decode-repeats``) and ``coolchic decode`` is timed as a subprocess, which adds the
    interpreter start and the imports (also timed alone: ``python -c "import coolchic.decoder"``,
    what the command imports).
(c) **Post-training share** of that encode, from its report: ``quantise_seconds /
    encode_seconds`` (network quantisation + bitstream writing) and ``(encode_seconds −
    train_seconds) / encode_seconds`` (also the verification decode). The share depends on the
    recipe: with ``instant`` training is tiny, so the share is an upper bound.

Run::

    python benchmarks/speed.py                       # all three, default sizes
    python benchmarks/speed.py --repeats 1 --iterations 8 --sizes 192x128   # a quick look

Prints a table and writes JSON (``--out``, default ``benchmarks/results/speed-<timestamp>.json``,
git-ignored). Absolute times only mean something with the machine they were taken on: the JSON
records it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from coolchic import __version__  # noqa: E402
from coolchic.codec import EncoderConfig, default_model_config, encode  # noqa: E402
from coolchic.io import Frame, read_frame  # noqa: E402
from coolchic.model.complexity import mac_per_pixel  # noqa: E402
from coolchic.model.config import ModelConfig  # noqa: E402
from coolchic.model.coolchic import CoolChicModel  # noqa: E402
from coolchic.train.loss import Target  # noqa: E402
from coolchic.train.recipes import Phase, Recipe, Warmup  # noqa: E402
from coolchic.train.trainer import Trainer  # noqa: E402

REFERENCE_PIXELS = 192 * 128


def parse_size(text: str) -> tuple[int, int]:
    """``"WxH"`` → (width, height)."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH, found {text!r}") from None
    if width < 2 or height < 2 or width % 2 or height % 2:
        raise argparse.ArgumentTypeError(f"{text}: width and height must be even and >= 2")
    return width, height


def synthetic_frame(width: int, height: int, seed: int = 0) -> Frame:
    """A YUV 4:2:0 8-bit picture with smooth gradients, edges and some texture."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(0.0, 1.0, height)[:, None]
    cols = np.linspace(0.0, 1.0, width)[None, :]
    luma = 0.5 + 0.3 * np.sin(7.0 * rows + 11.0 * cols * rows) + 0.15 * (cols > 0.6)
    luma = luma + rng.normal(0.0, 0.03, (height, width))
    chroma_rows, chroma_cols = rows[::2], cols[:, ::2]
    u = 0.5 + 0.1 * np.cos(5.0 * chroma_rows + 3.0 * chroma_cols)
    v = 0.5 + 0.1 * np.sin(4.0 * chroma_cols - 2.0 * chroma_rows)

    def to8(plane: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(plane * 255.0), 0, 255).astype(np.uint8)

    return Frame.from_integer_planes((to8(luma), to8(u), to8(v)), fmt="yuv420", bit_depth=8)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_recipe(iterations: int) -> Recipe:
    """One warm-up iteration, then ``iterations`` of a main-like phase evaluated once."""
    return Recipe(
        name=f"speed-{iterations}",
        description="speed benchmark",
        warmup=Warmup(stages=((1, 1),)),
        phases=(
            Phase(
                name="main",
                iterations=iterations,
                lr_start=1e-2,
                lr_end=1e-5,
                quantizer="softround",
                eval_every=iterations,
            ),
        ),
    )


def _auto_config(frame: Frame, lmbda: float) -> ModelConfig:
    """The architecture that the package in use picks for ``frame`` (``--baseline`` runs this
    script against older trees, whose ``default_model_config`` took the frame itself)."""
    try:
        return default_model_config(lmbda, pixels=frame.width * frame.height)
    except TypeError:
        return default_model_config(frame, lmbda)  # type: ignore[arg-type]


def time_training(
    frame: Frame,
    iterations: int,
    repeats: int,
    lmbda: float,
    device: str,
    architecture: str = "auto",
) -> dict[str, Any]:
    config = _auto_config(frame, lmbda) if architecture == "auto" else ModelConfig()
    target = Target.from_frame(frame, device)
    short = max(1, iterations // 4)
    if iterations <= short:
        iterations = short + 1

    def run(n: int) -> float:
        trainer = Trainer(
            target=target,
            lmbda=lmbda,
            recipe=bench_recipe(n),
            model_factory=lambda _seed: CoolChicModel(config, frame.height, frame.width).to(device),
            seed=0,
        )
        _sync(device)
        start = time.perf_counter()
        trainer.run()
        _sync(device)
        return time.perf_counter() - start

    run(short)  # warm-up: allocator, first-call costs
    per_iteration = []
    for _ in range(repeats):
        t_short = run(short)
        t_long = run(iterations)
        per_iteration.append((t_long - t_short) / (iterations - short))
    ms = [1e3 * value for value in per_iteration]
    return {
        "width": frame.width,
        "height": frame.height,
        "iterations_long": iterations,
        "iterations_short": short,
        "repeats": repeats,
        "ms_per_iteration_median": statistics.median(ms),
        "ms_per_iteration_all": [round(value, 3) for value in ms],
        "iterations_per_second": 1e3 / statistics.median(ms) if statistics.median(ms) > 0 else None,
        "mac_per_pixel": round(mac_per_pixel(config, frame.height, frame.width).total, 1),
    }


def _median_subprocess(command: list[str], repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdin=subprocess.DEVNULL, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def time_decode(
    frame: Frame, label: str, recipe: str, lmbda: float, repeats: int, threads: int, device: str
) -> dict[str, Any]:
    encoded = encode(frame, EncoderConfig(lmbda=lmbda, recipe=recipe, device=device))
    timings = time_stream_decode(encoded.bitstream, label, repeats, threads)
    report = encoded.report
    encode_s = float(report["encode_seconds"])
    return {
        **timings,
        "recipe": recipe,
        "lmbda": lmbda,
        "encode_report": {
            key: report[key]
            for key in (
                "iterations",
                "encode_seconds",
                "train_seconds",
                "quantise_seconds",
                "decode_seconds",
                "mac_per_pixel",
            )
        },
        "post_training": {
            "quantise_share": float(report["quantise_seconds"]) / encode_s,
            "after_training_share": (encode_s - float(report["train_seconds"])) / encode_s,
        },
    }


def time_stream_decode(data: bytes, label: str, repeats: int, threads: int) -> dict[str, Any]:
    """Decode ``data`` in-process (first call, then ``repeats``) and as a whole command."""
    # Imported here: ``--baseline`` runs a copy of this script in older trees (with
    # ``--skip-decode``), where the decoder had another home.
    from coolchic.decoder import decode

    start = time.perf_counter()
    decoded = decode(data)
    cold = time.perf_counter() - start
    in_process = []
    for _ in range(repeats):
        start = time.perf_counter()
        decode(data)
        in_process.append(time.perf_counter() - start)

    with tempfile.TemporaryDirectory(prefix="coolchic-speed-") as tmp:
        stream = Path(tmp) / "stream.cool"
        stream.write_bytes(data)
        suffix = ".png" if decoded.format == "rgb" else ".yuv"
        output = Path(tmp) / f"decoded{suffix}"
        cli = [sys.executable, "-m", "coolchic", "-q", "--threads", str(threads)]
        cli += ["decode", str(stream), "-o", str(output)]
        cli_median, cli_all = _median_subprocess(cli, repeats)
        imports_median, imports_all = _median_subprocess(
            [sys.executable, "-c", "import coolchic.decoder"], repeats
        )

    return {
        "input": label,
        "width": decoded.width,
        "height": decoded.height,
        "bits": 8 * len(data),
        "bpp": 8 * len(data) / (decoded.width * decoded.height),
        "decode_in_process_seconds_median": statistics.median(in_process),
        "decode_in_process_seconds_all": [round(value, 4) for value in in_process],
        "decode_in_process_first_call_seconds": cold,
        "decode_cli_seconds_median": cli_median,
        "decode_cli_seconds_all": [round(value, 4) for value in cli_all],
        "python_import_coolchic_decoder_seconds_median": imports_median,
        "python_import_coolchic_decoder_seconds_all": [round(value, 4) for value in imports_all],
        "decode_command": shlex.join(cli),
    }


def baseline_training(
    args: argparse.Namespace, width: int, height: int, iterations: int, architecture: str
) -> list[dict[str, Any]]:
    """The training timing of one size at revision ``args.baseline``, in a subprocess.

    This script is copied into a temporary worktree of that revision, so that it imports the
    package as it was there; the measurement itself is today's.
    """
    with tempfile.TemporaryDirectory(prefix="coolchic-baseline-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(
            ["git", "-C", str(REPO_ROOT), "worktree", "add", "--detach", str(tree), args.baseline],
            check=True,
            capture_output=True,
        )
        try:
            script = tree / "benchmarks" / "speed_of_today.py"
            script.write_text(Path(__file__).read_text(encoding="utf-8"), encoding="utf-8")
            out = Path(tmp) / "baseline.json"
            command = [sys.executable, str(script), "--skip-decode", "--sizes"]
            command += [f"{width}x{height}", "--iterations", str(iterations)]
            command += ["--min-iterations", str(iterations), "--repeats", str(args.repeats)]
            command += ["--threads", str(args.threads), "--device", args.device]
            command += ["--lmbda", str(args.lmbda), "--architectures", architecture]
            command += ["--out", str(out)]
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            entries = json.loads(out.read_text(encoding="utf-8"))["training"]
        finally:
            subprocess.run(
                ["git", "-C", str(REPO_ROOT), "worktree", "remove", "--force", str(tree)],
                check=False,
                capture_output=True,
            )
    for entry in entries:
        entry["architecture"] = architecture
    return entries


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
        "system": f"{platform.system()} {platform.release()}",
        "hostname": platform.node(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "coolchic": __version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        default="192x128,416x240,1152x768",
        help="WxH list for the training speed (default: %(default)s)",
    )
    parser.add_argument(
        "--iterations",
        type=int,
        default=40,
        help="long-run iterations at 192x128, scaled down with the pixel count (default 40)",
    )
    parser.add_argument(
        "--min-iterations", type=int, default=6, help="long-run floor for large sizes (default 6)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="training repeats (median)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--lmbda", type=float, default=1e-3)
    parser.add_argument(
        "--decode-input", type=Path, help="picture to encode and decode (.yuv or .png)"
    )
    parser.add_argument(
        "--decode-size",
        type=parse_size,
        default=(1152, 768),
        help="size of the synthetic picture when no --decode-input (default 1152x768)",
    )
    parser.add_argument(
        "--decode-stream",
        type=Path,
        help="time the decoding of this existing .cool file instead of encoding a picture",
    )
    parser.add_argument("--decode-repeats", type=int, default=3, help="decode timings (median)")
    parser.add_argument(
        "--recipe",
        default="instant",
        choices=["instant", "faster", "fast", "medium", "slow", "placebo"],
        help="recipe of the encode that makes the decode stream (default: instant)",
    )
    parser.add_argument(
        "--architectures",
        default="auto",
        help="comma-separated: auto (what the encoder picks for the size), v2 (the v2-sized "
        "ModelConfig() default, ~2,200 MAC/pixel)",
    )
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="also time the training at git revision REV (checked out in a temporary worktree, "
        "run by this script in a subprocess), size by size in the same run, and print ratios",
    )
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--skip-decode", action="store_true")
    parser.add_argument("--out", type=Path, help="JSON (default: benchmarks/results/speed-*.json)")
    args = parser.parse_args(argv)
    try:
        sizes = [parse_size(text) for text in args.sizes.split(",") if text.strip()]
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    if min(args.repeats, args.decode_repeats, args.threads, args.iterations) < 1:
        parser.error("--repeats, --decode-repeats, --threads and --iterations must be >= 1")

    torch.set_num_threads(args.threads)
    started = dt.datetime.now().astimezone()
    result: dict[str, Any] = {
        "date": started.isoformat(timespec="seconds"),
        "command": shlex.join([sys.executable, *sys.argv]),
        "machine": machine_description(),
        "threads": torch.get_num_threads(),
        "device": args.device,
        "training": [],
    }

    if not args.skip_training:
        print(f"training speed, {args.threads} thread(s), device {args.device}:", file=sys.stderr)
        for width, height in sizes:
            scaled = round(args.iterations * REFERENCE_PIXELS / (width * height))
            iterations = max(args.min_iterations, min(args.iterations, scaled))
            for architecture in args.architectures.split(","):
                if args.baseline:
                    result.setdefault("baseline", {"revision": args.baseline, "training": []})
                    result["baseline"]["training"].extend(
                        baseline_training(args, width, height, iterations, architecture)
                    )
                entry = time_training(
                    synthetic_frame(width, height),
                    iterations,
                    args.repeats,
                    args.lmbda,
                    args.device,
                    architecture,
                )
                entry["architecture"] = architecture
                result["training"].append(entry)
                print(
                    f"  {width}x{height} ({architecture}): "
                    f"{entry['ms_per_iteration_median']:.1f} ms/iteration",
                    file=sys.stderr,
                )

    if not args.skip_decode and args.decode_stream:
        data = args.decode_stream.read_bytes()
        result["decode"] = time_stream_decode(
            data, str(args.decode_stream), args.decode_repeats, args.threads
        )
    elif not args.skip_decode:
        if args.decode_input:
            frame, label = read_frame(args.decode_input), str(args.decode_input)
        else:
            width, height = args.decode_size
            frame, label = synthetic_frame(width, height), f"synthetic {width}x{height}"
        print(f"encoding {label} with recipe {args.recipe}, then decoding ...", file=sys.stderr)
        result["decode"] = time_decode(
            frame, label, args.recipe, args.lmbda, args.decode_repeats, args.threads, args.device
        )

    out = args.out or REPO_ROOT / "benchmarks" / "results" / (
        f"speed-{started.strftime('%Y%m%d-%H%M%S')}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print_table(result)
    print(f"\nwrote {out}")
    return 0


def print_table(result: dict[str, Any]) -> None:
    machine = result["machine"]
    print(
        f"\n{result['date']}  {machine['cpu']} ({machine['logical_cpus']} CPUs), "
        f"{result['threads']} torch thread(s), device {result['device']}, "
        f"torch {machine['torch']}"
    )
    if result["training"]:
        print("\n(a) training, default architecture, softround main-phase step")
        header = f"{'size':>10} {'MAC/px':>8} {'ms/iter':>9} {'iter/s':>8}  runs (long-short)"
        print(header)
        print("-" * len(header))
        for entry in result["training"]:
            size = f"{entry['width']}x{entry['height']}"
            print(
                f"{size:>10} {entry['mac_per_pixel']:>8.0f} "
                f"{entry['ms_per_iteration_median']:>9.1f} {entry['iterations_per_second']:>8.2f}"
                f"  {entry['repeats']} x ({entry['iterations_long']}-{entry['iterations_short']})"
            )
    baseline = result.get("baseline")
    if baseline and baseline["training"]:
        print(f"\n    against revision {baseline['revision']} (same run, size by size)")
        header = f"{'size':>10} {'arch':>5} {'MAC/px':>13} {'ms/iter':>17} {'speed-up':>9}"
        print(header)
        print("-" * len(header))
        for old, new in zip(baseline["training"], result["training"], strict=True):
            size = f"{new['width']}x{new['height']}"
            ratio = old["ms_per_iteration_median"] / new["ms_per_iteration_median"]
            print(
                f"{size:>10} {new['architecture']:>5} "
                f"{old['mac_per_pixel']:>6.0f}→{new['mac_per_pixel']:<6.0f} "
                f"{old['ms_per_iteration_median']:>8.1f}→{new['ms_per_iteration_median']:<8.1f} "
                f"{ratio:>8.2f}x"
            )
    if "decode" in result:
        d = result["decode"]
        print(f"\n(b) decode of {d['input']} ({d['width']}x{d['height']}, {d['bpp']:.3f} bpp)")
        print(
            f"  in-process coolchic.codec.decode: {d['decode_in_process_seconds_median']:.3f} s "
            f"median (first call {d['decode_in_process_first_call_seconds']:.3f} s)"
        )
        print(
            f"  `coolchic decode` subprocess:     {d['decode_cli_seconds_median']:.3f} s median "
            f"(of which `import coolchic.decoder` alone: "
            f"{d['python_import_coolchic_decoder_seconds_median']:.3f} s)"
        )
        if "encode_report" not in d:
            return
        report, share = d["encode_report"], d["post_training"]
        print(
            f"\n(c) encode with recipe {d['recipe']} ({report['iterations']} iterations): "
            f"{report['encode_seconds']:.2f} s, of which training {report['train_seconds']:.2f} s, "
            f"quantise+write {report['quantise_seconds']:.2f} s, "
            f"verification decode {report['decode_seconds']:.2f} s"
        )
        print(
            f"  quantise share {100 * share['quantise_share']:.1f} %, "
            f"everything after training {100 * share['after_training_share']:.1f} %"
        )


if __name__ == "__main__":
    sys.exit(main())
