"""Train one recipe with architecture variants and print each trained model's cost, side by side.

For quick ablations: the model is trained exactly as ``coolchic encode`` trains it (same
architecture choice, recipe, seed and retries), then scored before quantisation, as the
decoder would see its latents (rounded) and its output (rounded samples): ``J = (MSE +
λ·bpp)·1e4`` with the float ARM's latent rate, without the network parameters' bits (a few
hundred bits at 416x240, and nearly the same across variants that add a handful of weights).

    python benchmarks/train_variants.py IMAGE.yuv --lmbda 1e-3 --recipe fast \\
        --variant base= --variant coarser2=coarser_contexts=2

A variant is ``NAME=FIELD=VALUE[,FIELD=VALUE…]`` over :class:`coolchic.model.config.ModelConfig`
integer fields and flags (0 or 1; empty: the default architecture), e.g.
``--variant cc5=ifce_features=2,hyper_grids=3,arm_stabiliser=1``. Variants run one after
another in this process, one torch thread each by default; run two scripts side by side for
pairs.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(HERE.parent))

from coolchic import codec  # noqa: E402
from coolchic.io import read_frame  # noqa: E402
from coolchic.model.config import ModelConfig  # noqa: E402
from coolchic.train.loss import Target  # noqa: E402
from coolchic.train.trainer import evaluate  # noqa: E402

_FLAGS = {f.name for f in dataclasses.fields(ModelConfig) if f.type in (bool, "bool")}


def variant(text: str) -> tuple[str, dict[str, int | bool]]:
    """``NAME=FIELD=VALUE,…`` → the name and the field overrides (0/1 for the flags)."""
    name, _, fields = text.partition("=")
    overrides: dict[str, int | bool] = {}
    for item in filter(None, fields.split(",")):
        field, _, value = item.partition("=")
        field = field.strip()
        overrides[field] = bool(int(value)) if field in _FLAGS else int(value)
    return name, overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", type=Path)
    parser.add_argument("--lmbda", type=float, default=1e-3)
    parser.add_argument("--recipe", default="fast")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iterations-scale", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variant", type=variant, action="append", required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    frame = read_frame(args.image)
    base = codec.default_model_config(args.lmbda, args.recipe, pixels=frame.width * frame.height)
    for name, overrides in args.variant:
        model_config: ModelConfig = dataclasses.replace(base, **overrides)
        config = codec.EncoderConfig(
            lmbda=args.lmbda,
            recipe=args.recipe,
            model=model_config,
            seed=args.seed,
            iterations_scale=args.iterations_scale,
        )
        start = time.perf_counter()
        model, _ = codec.train_model(frame, config)
        seconds = time.perf_counter() - start
        result = evaluate(model, Target.from_frame(frame, "cpu"), args.lmbda)
        print(
            f"{args.image.stem} {name}: J {1e4 * result.loss:.4f}, {result.bpp:.4f} bpp, "
            f"{result.psnr_db:.3f} dB, trained in {seconds:.1f} s",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
