"""Time one training iteration of the Cool-chic model on a synthetic image.

One iteration = forward with the quantisation proxy of `fast`'s main phase halfway through
(soft-rounding with Gaussian noise, :func:`coolchic.train.trainer.phase_quantizer`), loss
``MSE + λ·rate/(H·W)``, backward, gradient-norm clipping (0.1), Adam step.

    python benchmarks/model_step.py --height 128 --width 192 --iterations 200

``--compare-torch-noise`` alternates timed blocks in one process between the proxy's noise
from ``torch.randn`` and from the C kernel (:func:`coolchic.model.quantizer.gaussian_noise`),
and prints both medians and their ratio: one process, so the comparison sees the same machine
state.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from coolchic.allocator import keep_freed_memory
from coolchic.model import quantizer as quantizer_module
from coolchic.model.complexity import mac_per_pixel
from coolchic.model.config import (
    DEFAULT_ARM,
    DEFAULT_SYNTHESIS,
    ModelConfig,
    parse_arm,
    parse_synthesis,
)
from coolchic.model.coolchic import CoolChicModel
from coolchic.train.recipes import RECIPES
from coolchic.train.trainer import phase_quantizer


def _target(height: int, width: int) -> torch.Tensor:
    """A smooth synthetic RGB image ``[1, 3, H, W]`` in [0, 1]."""
    rows = torch.linspace(0.0, 1.0, height).view(1, 1, height, 1)
    cols = torch.linspace(0.0, 1.0, width).view(1, 1, 1, width)
    phases = torch.tensor([0.0, 1.0, 2.0]).view(1, 3, 1, 1)
    return 0.5 + 0.4 * torch.sin(6.0 * rows + 9.0 * cols * rows + phases)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=192)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timed blocks of --iterations; the median is reported",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lmbda", type=float, default=1e-3)
    parser.add_argument("--profile", action="store_true", help="print a torch.profiler table")
    parser.add_argument("--layers-arm", default=DEFAULT_ARM, help="ARM hidden widths")
    parser.add_argument("--n-ctx-rowcol", type=int, default=3, help="ARM context half-size N")
    parser.add_argument("--layers-synthesis", default=DEFAULT_SYNTHESIS, help="synthesis layers")
    parser.add_argument(
        "--coarser-contexts", type=int, default=0, help="coarser grids in the ARM context"
    )
    parser.add_argument("--ifce-features", type=int, default=0, help="inter-feature values C_f")
    parser.add_argument("--hyper-grids", type=int, default=0, help="hyper-latent grids H")
    parser.add_argument("--arm-stabiliser", action="store_true", help="the ARM's linear map")
    parser.add_argument(
        "--synthesis-stabiliser", action="store_true", help="the synthesis' 1x1 linear map"
    )
    parser.add_argument("--profile-steps", type=int, default=20, help="iterations profiled")
    parser.add_argument(
        "--compare-torch-noise",
        action="store_true",
        help="alternate blocks with torch.randn noise and with the C kernel's; print both",
    )
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the trainer does
    config = ModelConfig(
        n_ctx_rowcol=args.n_ctx_rowcol,
        arm_hidden=parse_arm(args.layers_arm),
        synthesis=parse_synthesis(args.layers_synthesis),
        coarser_contexts=args.coarser_contexts,
        ifce_features=args.ifce_features,
        hyper_grids=args.hyper_grids,
        arm_stabiliser=args.arm_stabiliser,
        synthesis_stabiliser=args.synthesis_stabiliser,
    )
    model = CoolChicModel(config, args.height, args.width)
    target = _target(args.height, args.width)
    quantizer = phase_quantizer(RECIPES["fast"].phases[0], 0.5)
    parameters = list(model.parameters())
    optimizer = torch.optim.Adam(parameters, lr=1e-2)
    n_pixels = args.height * args.width

    def step() -> torch.Tensor:
        out = model(quantizer=quantizer)
        loss = F.mse_loss(out.x_hat, target) + args.lmbda * out.rate_bits / n_pixels
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 0.1)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    for _ in range(args.warmup):
        step()
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.profile_steps):
                step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))
    if args.compare_torch_noise:
        return _compare_noise(step, args.iterations, args.repeats)
    block_ms: list[float] = []
    loss = torch.tensor(0.0)
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.iterations):
            loss = step()
        block_ms.append(1e3 * (time.perf_counter() - start) / args.iterations)
    final = float(loss)
    if not math.isfinite(final):
        print(f"non-finite loss {final}")
        return 1
    print(
        f"{args.height}x{args.width} ({mac_per_pixel(config, args.height, args.width).total:.0f} "
        f"MAC/px), {args.repeats}x{args.iterations} iterations, "
        f"{args.threads} threads: {statistics.median(block_ms):.2f} ms/iteration median "
        f"(min {min(block_ms):.2f}, max {max(block_ms):.2f}; final loss {final:.5f})"
    )
    return 0


def _compare_noise(step: Callable[[], torch.Tensor], iterations: int, repeats: int) -> int:
    """Median ms/iteration with ``torch.randn`` noise and with the kernel's, alternating."""
    kernel = quantizer_module.noise_kernel
    if kernel() is None:
        print("the noise kernel is not available here: nothing to compare")
        return 1
    sources = {"torch.randn": lambda: None, "C kernel": kernel}
    block_ms: dict[str, list[float]] = {name: [] for name in sources}
    try:
        for _ in range(repeats):
            for name, source in sources.items():
                quantizer_module.noise_kernel = source  # type: ignore[assignment]
                start = time.perf_counter()
                for _ in range(iterations):
                    step()
                block_ms[name].append(1e3 * (time.perf_counter() - start) / iterations)
    finally:
        quantizer_module.noise_kernel = kernel
    medians = {name: statistics.median(times) for name, times in block_ms.items()}
    for name, times in block_ms.items():
        print(f"noise from {name}: {medians[name]:.2f} ms/iteration median of {times}")
    print(f"C kernel / torch.randn: {medians['C kernel'] / medians['torch.randn']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
