"""Time the pointwise MLPs of a training step alone: the ARM on its contexts, the 1x1 synthesis.

One forward and backward of each, at ``fast``'s 1152x768 high-rate shapes (24 spatial
contexts and 2 inter-feature values into 8 hidden features and 2 outputs over 7 grids; 7
features into 8 and 3 over every pixel), the fastest of ``--repeats``: CPU time of the
calling thread on one thread (steal time on a shared host does not count), wall time on
more (the work is then on the chunk workers).
The kernel's share of a whole step is what ``model_step.py`` measures; this isolates it,
so that two revisions of ``pointwise_kernel.c`` can be compared on a noisy host (run the
script from each revision's tree, alternated, and compare medians). A checksum of the
gradients shows whether two revisions compute the same bits.

    python benchmarks/pointwise_mlp.py [--threads 1] [--repeats 12]
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable

import torch

from coolchic.model.pointwise import context_geometry, context_mlp, pointwise_mlp


def _layers(widths: list[int]) -> tuple[list[torch.Tensor], list[torch.Tensor], list[bool]]:
    weights = [
        (torch.randn(out, inp) * 0.3).requires_grad_() for inp, out in itertools.pairwise(widths)
    ]
    biases = [(torch.randn(out) * 0.1).requires_grad_() for out in widths[1:]]
    relus = [True] * (len(widths) - 2) + [False]
    return weights, biases, relus


def _fastest(step: Callable[[], None], repeats: int, clock: Callable[[], float]) -> float:
    """Milliseconds on ``clock``, the fastest of ``repeats`` after one warm-up."""
    step()
    times = []
    for _ in range(repeats):
        start = clock()
        step()
        times.append(clock() - start)
    return min(times) * 1e3


def measure(height: int, width: int, threads: int, repeats: int) -> tuple[float, float, float]:
    """ARM and synthesis forward+backward in ms, and the checksum of every gradient."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    shapes = [(height >> level, width >> level) for level in range(7)]
    geometry = context_geometry(shapes, n_ctx_rowcol=3, n_coarser=2)
    latents = sum(h * w for h, w in shapes)
    grids = (torch.randn(latents * 3) * 2).requires_grad_()  # the grids, then 2 planes
    arm = _layers([26, 8, 2])
    arm_grad = torch.randn(2, latents)
    features = torch.randn(7, height * width).requires_grad_()
    synthesis = _layers([7, 8, 3])
    synthesis_grad = torch.randn(3, height * width)

    def arm_step() -> None:
        context_mlp(grids * 1.0, geometry, *arm).backward(arm_grad)

    def synthesis_step() -> None:
        pointwise_mlp(features * 1.0, *synthesis).backward(synthesis_grad)

    clock = time.thread_time if threads == 1 else time.perf_counter
    arm_ms = _fastest(arm_step, repeats, clock)
    synthesis_ms = _fastest(synthesis_step, repeats, clock)
    checksum = sum(
        float(t.grad.double().abs().sum())  # type: ignore[union-attr]
        for t in (grids, features, *arm[0], *synthesis[0])
    )
    return arm_ms, synthesis_ms, checksum


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--width", type=int, default=1152)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=12)
    args = parser.parse_args()
    arm_ms, synthesis_ms, checksum = measure(args.height, args.width, args.threads, args.repeats)
    print(
        f"{args.height}x{args.width}, {args.threads} thread(s): ARM forward+backward "
        f"{arm_ms:.1f} ms, synthesis {synthesis_ms:.1f} ms, gradient checksum {checksum:.6f}"
    )


if __name__ == "__main__":
    main()
