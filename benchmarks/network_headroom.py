"""How much larger networks could gain on a trained model whose latents stay fixed.

Before a larger decoder goes into the stream (a format version, the integer ARM, the decoder's
kernels), this asks whether the networks' size is what holds the rate-distortion cost back. It
trains a model as ``coolchic encode`` does (or loads one that ``--save`` kept), rounds its
latents, and fits larger networks on them:

* the entropy model: wider hidden layers, a larger causal context, one ARM per coded grid
  (measured in latent bits);
* the synthesis: wider hidden layers, a 3x3 residual layer (measured in dB of distortion).

Each larger network starts as the trained one embedded in it: new units have zero output
weights, new inputs zero input weights, and a new residual layer is zero. It therefore starts
at the trained cost exactly, and what the fit then gains is what the extra capacity is worth.
The same Adam loop refitting the trained network itself is the reference. The latents do not
move: this measures what larger networks add to latents already trained, and training the
latents with them may add more.

    python benchmarks/network_headroom.py --inputs a_1152x768_1p_yuv420_8b.yuv \\
        --lmbdas 4e-4 --save a.pt
    python benchmarks/network_headroom.py --load a.pt
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from coolchic.codec import EncoderConfig, train_model
from coolchic.io.yuv import read_yuv_frame
from coolchic.model.arm import ContextGather, laplace_rate_bits, scale_from_raw
from coolchic.model.coolchic import CoolChicModel
from coolchic.train.loss import Target, distortion

#: Adam steps and learning rate of every fit, the reference's included.
STEPS = 300
LR = 1e-3
#: Latents per batch when pricing all of them (bounds the memory of a 1080p context table).
BATCH = 300_000


# --------------------------------------------------------------------------------------------
# Entropy model


def rounded_latents(model: CoolChicModel) -> Tensor:
    """The integers the stream carries, flat, as the ARM reads them."""
    with torch.no_grad():
        return torch.round(model.latents.scaled_flat())


def contexts_of(model: CoolChicModel, flat: Tensor, n_ctx_rowcol: int) -> Tensor:
    """``[N, C]`` contexts of every latent with ``n_ctx_rowcol``, the model's other planes."""
    gather = ContextGather(model.latents.shapes, n_ctx_rowcol, model.context_gather.n_coarser)
    with torch.no_grad():
        return gather(flat, model.arm.ifce).contiguous()


def arm_bits(params: list[Tensor], contexts: Tensor, flat: Tensor) -> Tensor:
    """Bits of ``flat`` under a one-hidden-layer ARM ``[W1, b1, W2, b2]``."""
    w1, b1, w2, b2 = params
    total = torch.zeros(())
    for rows in torch.arange(len(flat)).split(BATCH):
        raw = torch.relu(contexts[rows] @ w1.t() + b1) @ w2.t() + b2
        total = total + laplace_rate_bits(flat[rows], raw[:, 0], scale_from_raw(raw[:, 1])).sum()
    return total


def embedded_arm(model: CoolChicModel, contexts: Tensor, hidden: int) -> list[Tensor]:
    """The trained ARM inside one with ``hidden`` units that reads ``contexts``.

    ``contexts`` holds the trained ARM's inputs among its columns (a larger causal context
    does); each is found by value.

    Raises:
        ValueError: the ARM is not one hidden layer without a stabiliser, ``hidden`` is
            narrower than it, or one of its inputs is not among ``contexts``' columns.
    """
    weights, biases, _ = model.arm.layers()
    if len(weights) != 2 or model.arm.stabiliser is not None:
        raise ValueError("expected an ARM of one hidden layer without a stabiliser")
    w1, w2 = (w.detach() for w in weights)
    trained_width = w1.shape[0]
    if hidden < trained_width:
        raise ValueError(f"hidden {hidden} is narrower than the trained {trained_width}")
    trained = model.context_gather(rounded_latents(model), model.arm.ifce)
    columns: list[int] = []
    for k in range(trained.shape[1]):
        found = [
            j
            for j in range(contexts.shape[1])
            if j not in columns and torch.equal(contexts[:, j], trained[:, k])
        ]
        if not found:
            raise ValueError(f"the trained ARM's input {k} is not among the contexts")
        columns.append(found[0])
    generator = torch.Generator().manual_seed(0)
    first = torch.randn(hidden, contexts.shape[1], generator=generator) * 0.01
    first[:trained_width] = 0.0
    first[:trained_width, columns] = w1
    first_bias = torch.zeros(hidden)
    first_bias[:trained_width] = biases[0].detach()
    second = torch.zeros(2, hidden)
    second[:, :trained_width] = w2
    return [first, first_bias, second, biases[1].detach().clone()]


def fit(
    params: list[Tensor], cost: Callable[[list[Tensor]], Tensor], steps: int = STEPS
) -> tuple[float, float]:
    """Adam on ``cost(params)`` from ``params``; the cost before and after."""
    params = [p.detach().clone().requires_grad_(True) for p in params]
    optimiser = torch.optim.Adam(params, lr=LR)
    with torch.no_grad():
        start = float(cost(params))
    for _ in range(steps):
        loss = cost(params)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        return start, float(cost(params))


def arm_rows(model: CoolChicModel, steps: int = STEPS) -> list[dict[str, object]]:
    """Latent bits of each larger entropy model, against the trained ARM refitted."""
    flat = rounded_latents(model)
    n = model.config.n_ctx_rowcol
    width = model.config.arm_hidden[0]
    rows: list[dict[str, object]] = []

    def row(variant: str, n_params: int, start: float, end: float) -> None:
        rows.append({"part": "arm", "variant": variant, "parameters": n_params,
                     "bits_start": round(start), "bits": round(end)})  # fmt: skip

    for n_ctx in (n, n + 1):
        contexts = contexts_of(model, flat, n_ctx)
        for hidden in (width, 2 * width, 4 * width):
            params = embedded_arm(model, contexts, hidden)
            start, end = fit(params, lambda p, c=contexts: arm_bits(p, c, flat), steps)
            variant = f"N={n_ctx} ({contexts.shape[1]} inputs), hidden {hidden}"
            row(variant, sum(p.numel() for p in params), start, end)
    contexts = contexts_of(model, flat, n)
    params = embedded_arm(model, contexts, width)
    start = end = 0.0
    for grid in range(model.config.n_coded_grids):
        mine = torch.nonzero(model.grid_id == grid).flatten()
        grid_start, grid_end = fit(
            params, lambda p, r=mine: arm_bits(p, contexts[r], flat[r]), steps
        )
        start, end = start + grid_start, end + grid_end
    n_grids = model.config.n_coded_grids
    row("one ARM per coded grid", n_grids * sum(p.numel() for p in params), start, end)
    return rows


# --------------------------------------------------------------------------------------------
# Synthesis


def _conv3x3(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), weight, bias)


def synthesis_output(params: list[Tensor], features: Tensor) -> Tensor:
    """A 1x1 ``C → hidden → out`` synthesis, with a 3x3 residual layer after the hidden one
    when ``params`` has six tensors."""
    w1, b1, w2, b2, *residual = params
    _, channels, height, width = features.shape
    hidden = torch.relu(w1 @ features.reshape(channels, -1) + b1[:, None])
    if residual:
        maps = hidden.view(1, -1, height, width)
        hidden = torch.relu(_conv3x3(maps, *residual) + maps).view(maps.shape[1], -1)
    return (w2 @ hidden + b2[:, None]).view(1, -1, height, width)


def embedded_synthesis(model: CoolChicModel, hidden: int, residual: bool) -> list[Tensor]:
    """The trained synthesis inside one with ``hidden`` units (and a zero 3x3 residual layer).

    Raises:
        ValueError: the synthesis is not two 1x1 layers without a stabiliser, or ``hidden`` is
            narrower than it.
    """
    layers = model.config.synthesis
    if [layer.kernel for layer in layers] != [1, 1] or model.synthesis.stabiliser is not None:
        raise ValueError("expected a synthesis of two 1x1 layers without a stabiliser")
    convs = [p.detach() for p in model.synthesis.parameters()]
    w1, b1, w2, b2 = convs[0].flatten(1), convs[1], convs[2].flatten(1), convs[3]
    trained_width = w1.shape[0]
    if hidden < trained_width:
        raise ValueError(f"hidden {hidden} is narrower than the trained {trained_width}")
    generator = torch.Generator().manual_seed(0)
    first = torch.randn(hidden, w1.shape[1], generator=generator) * 0.01
    first[:trained_width] = w1
    first_bias = torch.zeros(hidden)
    first_bias[:trained_width] = b1
    second = torch.zeros(w2.shape[0], hidden)
    second[:, :trained_width] = w2
    params = [first, first_bias, second, b2.clone()]
    if residual:
        params += [torch.zeros(hidden, hidden, 3, 3), torch.zeros(hidden)]
    return params


def synthesis_rows(
    model: CoolChicModel, target: Target, steps: int = STEPS
) -> list[dict[str, object]]:
    """Distortion of each larger synthesis on the fixed upsampled latents."""
    with torch.no_grad():
        grids = model.latents.split(rounded_latents(model))[: model.config.n_grids]
        features = model.upsampling(grids)
    width = model.config.synthesis[0].out_channels
    rows: list[dict[str, object]] = []
    for hidden, residual in ((width, False), (2 * width, False), (4 * width, False), (width, True)):
        params = embedded_synthesis(model, hidden, residual)
        start, end = fit(params, lambda p: distortion(synthesis_output(p, features), target), steps)
        rows.append(
            {
                "part": "synthesis",
                "variant": f"hidden {hidden}" + (", 3x3 residual" if residual else ""),
                "parameters": sum(p.numel() for p in params),
                "mse_start": start,
                "mse": end,
                "dB": round(10 * math.log10(start / end), 4),
            }
        )
    return rows


# --------------------------------------------------------------------------------------------


def load(path: Path) -> tuple[CoolChicModel, dict[str, object]]:
    """A model that ``--save`` kept, and what it was trained on."""
    saved = torch.load(path, weights_only=False)
    model = CoolChicModel(saved["config"], saved["height"], saved["width"])
    model.load_state_dict(saved["state"])
    return model, saved["about"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=Path, nargs="*", default=[])
    parser.add_argument("--lmbdas", default="1e-3")
    parser.add_argument("--recipe", default="fast")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--save", type=Path, help="keep the trained model here (one input, λ)")
    parser.add_argument("--load", type=Path, nargs="*", default=[], help="models --save kept")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    if args.save and len(args.inputs) * len(args.lmbdas.split(",")) != 1:
        parser.error("--save keeps one model: give one input and one λ")
    torch.set_num_threads(args.threads)
    models: list[tuple[CoolChicModel, dict[str, object]]] = [load(p) for p in args.load]
    for path in args.inputs:
        for lmbda in (float(text) for text in args.lmbdas.split(",")):
            frame = read_yuv_frame(path)
            config = EncoderConfig(lmbda=lmbda, recipe=args.recipe, seed=args.seed)
            started = time.perf_counter()
            model, _ = train_model(frame, config)
            about = {
                "input": str(path),
                "lmbda": lmbda,
                "recipe": args.recipe,
                "seed": args.seed,
                "train_s": round(time.perf_counter() - started, 1),
            }
            if args.save:
                torch.save(
                    {
                        "config": model.config,
                        "height": model.height,
                        "width": model.width,
                        "state": model.state_dict(),
                        "about": about,
                    },
                    args.save,
                )
            models.append((model, about))
    rows = []
    for model, about in models:
        target = Target.from_frame(read_yuv_frame(Path(str(about["input"]))), "cpu")
        for row in arm_rows(model, args.steps) + synthesis_rows(model, target, args.steps):
            rows.append(
                {
                    "input": Path(str(about["input"])).name,
                    "lmbda": about["lmbda"],
                    "recipe": about["recipe"],
                    **row,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
