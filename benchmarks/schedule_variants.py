"""Training schedules compared in pairs: a recipe against its variants, same inputs, seeds and λ.

On small frames one seed's encode moves by a few percent from another's, more than most
schedule changes are worth. So a variant is judged by the change of the rate-distortion cost
``J = (MSE + λ·bpp)·1e4`` (4:2:0 PSNR for YUV inputs, RGB for PNG) at each (input, seed, λ),
against the recipe as it ships at the same (input, seed, λ), and by the mean and standard error
of those changes, with how many points got worse and the ratio of encode times.

    python benchmarks/schedule_variants.py --inputs a_192x128_01p_yuv420_8b.yuv b.yuv \\
        --recipe fast --lmbdas 1e-3,4e-3 --seeds 0,1,2,3 \\
        --variant w8=warmup=8x25+2x100 --variant long=main=4500

A variant is ``NAME=KEY=VALUE[,KEY=VALUE…]`` over the recipe's schedule:

* ``warmup``: the warm-up stages, ``CANDIDATESxITERATIONS`` joined by ``+`` (``8x25+2x100``);
* ``main``, ``final``: iterations of the main (soft-rounding) and integer phases;
* ``lr``: the learning rate of the warm-up and at the start of the main phase;
* ``network_lr_scale``: how many times faster than the latents the networks learn.

Every encode is ``coolchic encode`` itself (``-q --threads T encode IN --recipe R --lmbda L
--seed S``), run in a child process of this script whose recipe table holds the variant (the
base too, so that both import the same coolchic), and the stream is written and checked as a
user's would be. Reports stay in ``--out/work/<variant>/<input>/`` and
are reused when the script runs again: a variant, a seed or a λ can be added later without
coding the others again. The summary is printed and written to ``--out/summary.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
for folder in (HERE.parent, HERE):  # coolchic and rd.py, from anywhere
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from rd import standard_error  # noqa: E402

from coolchic.train.recipes import RECIPES, Recipe  # noqa: E402

#: The unmodified recipe's name in reports and the summary.
BASE = "base"
#: The schedule keys a variant may set.
KEYS = ("warmup", "main", "final", "lr", "network_lr_scale")
#: First argument of the hidden child mode: ``--child RECIPE OVERRIDES_JSON CLI_ARGS…``.
CHILD = "--child"


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME=KEY=VALUE,…`` → the name and the overrides, each checked and typed."""
    name, _, body = text.partition("=")
    if not name.isidentifier() or name == BASE:
        raise ValueError(f"variant {text!r}: expected a name (letters, digits, _), not {BASE!r}")
    overrides: dict[str, Any] = {}
    for item in filter(None, body.split(",")):
        key, _, value = item.partition("=")
        if key not in KEYS or not value:
            raise ValueError(
                f"variant {name}: expected KEY=VALUE with KEY in {KEYS}, found {item!r}"
            )
        try:
            if key == "warmup":
                overrides[key] = tuple(
                    tuple(int(n) for n in stage.split("x", 1)) for stage in value.split("+")
                )
                if any(len(stage) != 2 for stage in overrides[key]):
                    raise ValueError
            elif key in ("main", "final"):
                overrides[key] = int(value)
            else:
                overrides[key] = float(value)
        except ValueError:
            raise ValueError(f"variant {name}: {key}={value!r} is not a valid value") from None
    if not overrides:
        raise ValueError(f"variant {name}: nothing to change (expected {KEYS})")
    return name, overrides


def apply_variant(recipe: Recipe, overrides: dict[str, Any]) -> Recipe:
    """``recipe`` with the overrides of :func:`parse_variant` (validated by the dataclasses)."""
    warmup = recipe.warmup
    if "warmup" in overrides:
        warmup = dataclasses.replace(warmup, stages=tuple(overrides["warmup"]))
    if "lr" in overrides:
        warmup = dataclasses.replace(warmup, lr=overrides["lr"])
    phases = []
    for phase in recipe.phases:
        if phase.name == "main" and "main" in overrides:
            phase = dataclasses.replace(phase, iterations=overrides["main"])
        if phase.name == "main" and "lr" in overrides:
            phase = dataclasses.replace(phase, lr_start=overrides["lr"])
        if phase.name == "integer" and "final" in overrides:
            phase = dataclasses.replace(phase, iterations=overrides["final"])
        phases.append(phase)
    changes: dict[str, Any] = {"warmup": warmup, "phases": tuple(phases)}
    if "network_lr_scale" in overrides:
        changes["network_lr_scale"] = overrides["network_lr_scale"]
    return dataclasses.replace(recipe, **changes)


def run_child(argv: Sequence[str]) -> int:
    """The child mode: install the variant in the recipe table, then run the command line."""
    recipe, overrides, *cli_args = argv
    typed = json.loads(overrides)
    if "warmup" in typed:
        typed["warmup"] = tuple(tuple(stage) for stage in typed["warmup"])
    RECIPES[recipe] = apply_variant(RECIPES[recipe], typed)
    from coolchic.cli import main

    return main(cli_args)


@dataclass(frozen=True)
class Point:
    """One encode: which variant, input, seed and λ."""

    variant: str
    source: Path
    seed: int
    lmbda: str

    def report_path(self, out: Path) -> Path:
        stem = self.source.name.removesuffix(".yuv").removesuffix(".png")
        return out / "work" / self.variant / stem / f"lmbda{self.lmbda}_seed{self.seed}.json"


def cost(report: dict[str, Any]) -> float:
    """``J = (MSE + λ·bpp)·1e4`` of an encode report, the MSE from its PSNR on [0, 1]."""
    psnr = report.get("psnr_yuv", report.get("psnr_rgb"))
    return (10 ** (-float(psnr) / 10) + float(report["lmbda"]) * float(report["bpp"])) * 1e4


def encode(point: Point, overrides: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Code ``point`` unless its report is there already; return the report."""
    report = point.report_path(args.out)
    if not report.exists():
        report.parent.mkdir(parents=True, exist_ok=True)
        command = [
            *(sys.executable, __file__, CHILD, args.recipe, json.dumps(overrides)),
            *("-q", "--threads", str(args.threads), "encode", str(point.source)),
            *("-o", str(report.with_suffix(".cool")), "--report", str(report)),
            *("--recipe", args.recipe, "--lmbda", point.lmbda, "--seed", str(point.seed)),
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")
    return json.loads(report.read_text(encoding="utf-8"))


def paired(
    reports: dict[Point, dict[str, Any]], variant: str, sources: Sequence[Path]
) -> dict[str, Any]:
    """The variant's J changes against the base, per input and over all inputs."""

    def summary(points: list[Point]) -> dict[str, Any]:
        """Changes in the order of ``points``: input, then seed, then λ."""
        changes = []
        seconds = [0.0, 0.0]
        for point in points:
            base = reports[dataclasses.replace(point, variant=BASE)]
            changes.append(100 * (cost(reports[point]) / cost(base) - 1))
            seconds[0] += float(base["encode_seconds"])
            seconds[1] += float(reports[point]["encode_seconds"])
        return {
            "points": len(changes),
            "mean_percent": statistics.mean(changes),
            "standard_error": standard_error(changes),
            "worse": sum(change > 0 for change in changes),
            "time_ratio": seconds[1] / seconds[0],
            "changes_percent": changes,
        }

    mine = sorted(
        (point for point in reports if point.variant == variant),
        key=lambda point: (str(point.source), point.seed, float(point.lmbda)),
    )
    per_input = {
        source.name: summary([point for point in mine if point.source == source])
        for source in sources
    }
    return {"inputs": per_input, "all": summary(mine)}


def _format(result: dict[str, Any]) -> str:
    error = result["standard_error"]
    spread = f" ± {error:.2f}" if error is not None else ""
    return (
        f"{result['mean_percent']:+.2f}{spread} %, {result['worse']}/{result['points']} worse, "
        f"time {result['time_ratio']:.2f}x"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", nargs="+", type=Path, required=True)
    parser.add_argument("--recipe", default="fast", choices=sorted(RECIPES))
    parser.add_argument("--lmbdas", default="1e-3,4e-3", help="comma-separated λ")
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds")
    parser.add_argument(
        "--variant", action="append", default=[], required=True, help="NAME=KEY=VALUE,…"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads per encode")
    parser.add_argument("--jobs", type=int, default=2, help="encodes side by side")
    parser.add_argument(
        "--out", type=Path, default=HERE / "results" / time.strftime("sv-%Y%m%d-%H%M%S")
    )
    args = parser.parse_args(argv)
    try:
        args.variants = dict(parse_variant(text) for text in args.variant)
        for overrides in args.variants.values():
            apply_variant(RECIPES[args.recipe], overrides)
        args.seed_list = [int(seed) for seed in args.seeds.split(",")]
        args.lmbda_list = [lmbda.strip() for lmbda in args.lmbdas.split(",")]
        for lmbda in args.lmbda_list:
            float(lmbda)
    except ValueError as error:
        parser.error(str(error))
    if len(args.variants) != len(args.variant):
        parser.error("two variants have the same name")
    missing = [str(path) for path in args.inputs if not path.is_file()]
    if missing:
        parser.error(f"no such input: {', '.join(missing)}")
    args.inputs = [path.resolve() for path in args.inputs]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [CHILD]:
        return run_child(argv[1:])
    args = parse_args(argv)
    overrides = {BASE: {}, **args.variants}
    # variant innermost: a pair finishes close together, so an interrupted run leaves pairs
    points = [
        Point(variant, source, seed, lmbda)
        for source in args.inputs
        for seed in args.seed_list
        for lmbda in args.lmbda_list
        for variant in overrides
    ]
    reports: dict[Point, dict[str, Any]] = {}

    def one(point: Point) -> None:
        reports[point] = encode(point, overrides[point.variant], args)
        print(
            f"{point.variant} {point.source.name} seed {point.seed} λ {point.lmbda}: "
            f"J {cost(reports[point]):.4f}, {reports[point]['encode_seconds']:.0f} s",
            flush=True,
        )

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(one, points))
    summary = {
        "recipe": args.recipe,
        "lmbdas": args.lmbda_list,
        "seeds": args.seed_list,
        "variants": {
            name: {"overrides": overrides[name], **paired(reports, name, args.inputs)}
            for name in args.variants
        },
        "command": " ".join([Path(sys.argv[0]).name, *argv]),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    for name, result in summary["variants"].items():
        print(f"\n{name} against {args.recipe} ({overrides[name]}): ΔJ {_format(result['all'])}")
        for source, per_input in result["inputs"].items():
            print(f"  {source}: {_format(per_input)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
