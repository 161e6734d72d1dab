"""Time one training iteration of the Cool-chic model on a synthetic 4:2:0 image.

One iteration is the encoder's own (:func:`coolchic.train.trainer.training_step`): forward
with the quantisation proxy of `fast`'s main phase halfway through (soft-rounding with
Gaussian noise), loss ``4:2:0 MSE + λ·rate/(H·W)``, backward, clipping of the networks'
gradient, and the trainer's optimiser (SOAP for the networks, Adam for the latents). Until
2026-12-06 the script ran its own step, with Adam on everything and RGB MSE: figures before
that date are not comparable with later ones.

    python benchmarks/model_step.py --height 128 --width 192 --iterations 200

``--compare-with ALTERNATIVE`` alternates timed blocks in one process between the code as it
is and one alternative, and prints both medians and their ratio (one process, so both see the
same machine state): ``torch-noise``, the proxy's noise from ``torch.randn`` instead of the C
kernel (:func:`coolchic.model.quantizer.gaussian_noise`); ``python-adam``, the latents' Adam
update in Python instead of torch's fused kernel (:mod:`coolchic.train.soap`);
``no-dense-levels``, the small upsampling levels as 1-D passes instead of dense matrices
(:data:`coolchic.model.upsampling.DENSE_MAX_SIZE`).
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
from coolchic.model import native, upsampling
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
from coolchic.model.upsampling import DENSE_MAX_SIZE
from coolchic.train import soap
from coolchic.train.loss import Target
from coolchic.train.recipes import ALL_MODULES, RECIPES
from coolchic.train.soap import FUSED_ADAM_MIN_ELEMENTS
from coolchic.train.trainer import make_optimizer, phase_quantizer, select_trained, training_step


def _target(height: int, width: int) -> Target:
    """A smooth synthetic 4:2:0 image in [0, 1] (height and width even)."""
    rows = torch.linspace(0.0, 1.0, height).view(1, 1, height, 1)
    cols = torch.linspace(0.0, 1.0, width).view(1, 1, 1, width)
    phases = torch.tensor([0.0, 1.0, 2.0]).view(1, 3, 1, 1)
    planes = 0.5 + 0.4 * torch.sin(6.0 * rows + 9.0 * cols * rows + phases)
    chroma = F.avg_pool2d(planes[:, 1:], kernel_size=2)
    return Target(format="yuv420", bit_depth=8, full=planes[:, :1].contiguous(), chroma=chroma)


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
        "--compare-with",
        choices=sorted(_ALTERNATIVES),
        help="alternate blocks with this alternative and with the code as it is; print both",
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
    networks, parameters = select_trained(model, ALL_MODULES)
    optimizer = make_optimizer(networks, parameters, lr=1e-2)
    generator = torch.Generator().manual_seed(0)

    def step() -> torch.Tensor:
        loss = training_step(
            model,
            optimizer,
            networks,
            target=target,
            lmbda=args.lmbda,
            quantizer=quantizer,
            generator=generator,
        )
        return loss.detach()

    for _ in range(args.warmup):
        step()
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.profile_steps):
                step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))
    if args.compare_with:
        return _compare(step, args.compare_with, args.iterations, args.repeats)
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


def _torch_noise(alternative: bool) -> None:
    quantizer_module.noise_kernel = (lambda: None) if alternative else native.noise_kernel


def _python_adam(alternative: bool) -> None:
    soap.FUSED_ADAM_MIN_ELEMENTS = 1 << 62 if alternative else FUSED_ADAM_MIN_ELEMENTS


def _no_dense_levels(alternative: bool) -> None:
    upsampling.DENSE_MAX_SIZE = 0 if alternative else DENSE_MAX_SIZE


#: What ``--compare-with`` can switch to, each as a function of ``alternative``.
_ALTERNATIVES: dict[str, Callable[[bool], None]] = {
    "torch-noise": _torch_noise,
    "python-adam": _python_adam,
    "no-dense-levels": _no_dense_levels,
}


def _compare(step: Callable[[], torch.Tensor], name: str, iterations: int, repeats: int) -> int:
    """Median ms/iteration with the alternative and with the code as it is, alternating."""
    switch = _ALTERNATIVES[name]
    block_ms: dict[bool, list[float]] = {True: [], False: []}
    try:
        for _ in range(repeats):
            for alternative in (True, False):
                switch(alternative)
                start = time.perf_counter()
                for _ in range(iterations):
                    step()
                block_ms[alternative].append(1e3 * (time.perf_counter() - start) / iterations)
    finally:
        switch(False)
    medians = {key: statistics.median(times) for key, times in block_ms.items()}
    for alternative, label in ((True, name), (False, "as it is")):
        times = ", ".join(f"{t:.1f}" for t in block_ms[alternative])
        print(f"{label}: {medians[alternative]:.2f} ms/iteration median ({times})")
    print(f"as it is / {name}: {medians[False] / medians[True]:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
