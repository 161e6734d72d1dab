"""What is left to gain after training, on the model the encoder would write.

For each input and λ this trains a model as ``coolchic encode`` does (recipe, seed, one
thread), quantises its networks as the encoder does, and then measures three things on that
fixed model, each as a change of the cost ``J = MSE + λ·bpp`` (the encoder's own
:func:`~coolchic.train.trainer.evaluate`):

* ``improbable``: the latents' RDOQ that ships
  (:func:`~coolchic.nnquant.search.rdoq_improbable_latents`);
* ``greedy``: after it, every non-zero latent (``--exhaustive``) or the ``--top`` ranked
  first by a first-order estimate (its own rate under its fixed context, plus the distortion
  gradient), each tried one step towards 0 and kept where the exact cost drops: how much a
  wider latent RDOQ could add;
* ``grid offsets``: the latent bits saved by a per-grid offset of the ARM's ``(μ, log b)``,
  fitted with the latents and networks fixed. The offsets' own parameter bits are not counted,
  so this bounds what a per-grid ARM output bias could give.

    python benchmarks/post_training_bounds.py --inputs a_192x128_01p_yuv420_8b.yuv \\
        --lmbdas 1e-3,4e-3 --top 300
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from coolchic.codec import EncoderConfig, train_model
from coolchic.io.yuv import read_yuv_frame
from coolchic.model.arm import laplace_rate_bits, scale_from_raw
from coolchic.model.coolchic import CoolChicModel
from coolchic.nnquant.search import RDOQ_MAX_PIXELS, quantize_networks, rdoq_improbable_latents
from coolchic.train.loss import Target, distortion
from coolchic.train.trainer import evaluate


def _mu_raw_scale(model: CoolChicModel, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The ARM's ``μ`` and raw log-scale of every latent (stabiliser included), contexts from
    ``flat``: what :meth:`~coolchic.model.arm.Arm.rate_of` prices them with."""
    raw = model.arm.raw(model.context_gather(flat, model.arm.ifce))
    return raw[:, 0], raw[:, 1]


def grid_offset_bits(model: CoolChicModel, steps: int = 400) -> tuple[float, float]:
    """Latent bits before and after fitting one ``(μ, log b)`` offset per coded grid."""
    with torch.no_grad():
        flat = torch.round(model.latents.scaled_flat())
        mu, raw_scale = _mu_raw_scale(model, flat)
    offsets = torch.zeros(len(model.latents.sizes), 2, requires_grad=True)
    optimiser = torch.optim.Adam([offsets], lr=0.02)

    def bits() -> torch.Tensor:
        shift = offsets[model.grid_id]
        return laplace_rate_bits(flat, mu + shift[:, 0], scale_from_raw(raw_scale + shift[:, 1]))

    with torch.no_grad():
        before = float(bits().sum())
    for _ in range(steps):
        total = bits().sum()
        optimiser.zero_grad()
        total.backward()
        optimiser.step()
    with torch.no_grad():
        return before, float(bits().sum())


def ranked_candidates(model: CoolChicModel, target: Target, lmbda: float) -> torch.Tensor:
    """Non-zero latents, best first by the estimated cost change of a step towards 0."""
    flat = torch.round(model.latents.scaled_flat()).detach()
    step = -torch.sign(flat)
    with torch.no_grad():
        mu, raw_scale = _mu_raw_scale(model, flat)
        scale = scale_from_raw(raw_scale)
        own = laplace_rate_bits(flat + step, mu, scale) - laplace_rate_bits(flat, mu, scale)
    latents = flat.clone().requires_grad_(True)
    grids = model.latents.split(latents)[: model.config.n_grids]
    # the training loss's distortion: the output unrounded, so that it has a gradient
    distortion(model.synthesis(model.upsampling(grids)), target).backward()
    assert latents.grad is not None
    estimate = latents.grad * step + lmbda * own / target.n_pixels
    nonzero = torch.nonzero(flat).flatten()
    return nonzero[torch.argsort(estimate[nonzero], stable=True)]


def greedy_towards_zero(
    model: CoolChicModel, target: Target, lmbda: float, candidates: list[int]
) -> tuple[float, int]:
    """Each candidate one step towards 0, kept where the exact cost drops; (cost, moved)."""
    latents = model.latents
    best = evaluate(model, target, lmbda).loss
    moved = 0
    with torch.no_grad():
        flat = torch.round(latents.scaled_flat())
    for index in candidates:
        value = float(flat[index])
        latents.set_quantized(index, value - (1.0 if value > 0 else -1.0))
        cost = evaluate(model, target, lmbda).loss
        if cost < best:
            best, moved = cost, moved + 1
        else:
            latents.set_quantized(index, value)
    return best, moved


def measure(path: Path, lmbda: float, args: argparse.Namespace) -> dict[str, object]:
    frame = read_yuv_frame(path)
    config = EncoderConfig(lmbda=lmbda, recipe=args.recipe, seed=args.seed)
    started = time.perf_counter()
    model, _ = train_model(frame, config)
    train_seconds = time.perf_counter() - started
    target = Target.from_frame(frame, "cpu")
    quantize_networks(model, target, lmbda, rdoq=target.n_pixels <= RDOQ_MAX_PIXELS)
    start = evaluate(model, target, lmbda).loss
    bits_before, bits_after = grid_offset_bits(model)
    rdoq_improbable_latents(model, target, lmbda)
    after_improbable = evaluate(model, target, lmbda).loss
    started = time.perf_counter()
    ranked = ranked_candidates(model, target, lmbda).tolist()
    tried = ranked if args.exhaustive else ranked[: args.top]
    after_greedy, moved = greedy_towards_zero(model, target, lmbda, tried)
    return {
        "input": path.name,
        "lmbda": lmbda,
        "seed": args.seed,
        "train_s": round(train_seconds, 1),
        "improbable_dJ_%": round(100 * (after_improbable / start - 1), 3),
        "greedy_dJ_%": round(100 * (after_greedy / after_improbable - 1), 3),
        "greedy_tried": len(tried),
        "greedy_moved": moved,
        "greedy_s": round(time.perf_counter() - started, 1),
        "latent_bits": round(bits_before),
        "grid_offsets_dbits_%": round(100 * (bits_after / bits_before - 1), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=Path, nargs="+", required=True)
    parser.add_argument("--lmbdas", default="1e-3,4e-3")
    parser.add_argument("--recipe", default="fast")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--top", type=int, default=300, help="latents the greedy pass tries")
    parser.add_argument("--exhaustive", action="store_true", help="try every non-zero latent")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for path in args.inputs:
        for lmbda in (float(text) for text in args.lmbdas.split(",")):
            rows.append(measure(path, lmbda, args))
            print(json.dumps(rows[-1]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
