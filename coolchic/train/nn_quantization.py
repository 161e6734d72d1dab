"""Choose the quantisation steps of the network parameters by rate-distortion cost (spec §3).

Each (module, kind) group — ARM weights, ARM biases, upsampling filters, synthesis weights,
synthesis biases — gets one step ``2^-e``. Modules are visited in coding order; inside a
module the weights are chosen first (biases still at full precision), then the biases. For
each candidate exponent the group is quantised from its full-precision copy, the model is
evaluated as the decoder sees it, and the cost ``loss + λ · bits(group) / (H·W)`` is compared;
bits are the exact signed exp-Golomb length at the best order. The evaluations are cheap next
to training (about 150 forward passes without gradient).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from coolchic.bitstream.constants import NN_GROUPS, NN_Q_MAX
from coolchic.bitstream.expgolomb import best_order
from coolchic.model.coolchic import CoolChicModel
from coolchic.train.loss import Target
from coolchic.train.trainer import evaluate

logger = logging.getLogger(__name__)

#: Candidate step exponents per group (step = 2^-e), from Cool-chic 5.0's tables.
EXPONENT_CANDIDATES: dict[tuple[str, str], range] = {
    ("arm", "weight"): range(0, 9),
    ("arm", "bias"): range(0, 17),
    ("upsampling", "weight"): range(0, 13),
    ("upsampling", "bias"): range(0, 1),
    ("synthesis", "weight"): range(0, 13),
    ("synthesis", "bias"): range(0, 25),
}
#: Passes over the groups: the second re-chooses each step with the others quantised.
N_PASSES = 2


def parameter_kind(name: str) -> str:
    """``"bias"`` for biases, ``"weight"`` for everything else (weights, filter taps)."""
    return "bias" if name.rsplit(".", 1)[-1] == "bias" else "weight"


def group_parameters(
    model: CoolChicModel, module: str, kind: str
) -> list[tuple[str, torch.Tensor]]:
    """The named parameters of one group, in declaration order (the coding order)."""
    return [
        (name, parameter)
        for name, parameter in model.module(module).named_parameters()  # type: ignore[arg-type]
        if parameter_kind(name) == kind
    ]


@dataclass(frozen=True, eq=False)
class QuantizedGroup:
    """One group as transmitted: integers ``q`` (float value ``q · 2^-exponent``)."""

    module: str
    kind: str
    names: tuple[str, ...]
    integers: tuple[np.ndarray, ...]
    exponent: int
    order: int
    n_bits: int

    def flat(self) -> np.ndarray:
        if not self.integers:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([q.ravel() for q in self.integers])


def quantize_tensor(value: torch.Tensor, exponent: int) -> np.ndarray:
    """``round(value · 2^e)`` as int64 (round half to even, like torch.round)."""
    scaled = torch.round(value.detach().double() * float(2**exponent))
    return scaled.to(torch.int64).cpu().numpy()


def _set_group(
    parameters: list[tuple[str, torch.Tensor]], integers: list[np.ndarray], exponent: int
) -> None:
    with torch.no_grad():
        for (_, parameter), q in zip(parameters, integers, strict=True):
            value = torch.from_numpy(np.ldexp(q.astype(np.float64), -exponent))
            parameter.copy_(value.to(parameter.dtype))


def _search_group(
    model: CoolChicModel,
    target: Target,
    lmbda: float,
    module: str,
    kind: str,
    originals: list[torch.Tensor],
) -> tuple[QuantizedGroup, int]:
    """The exponent of one group with the lowest RD cost, the others held as they are."""
    parameters = group_parameters(model, module, kind)
    best: tuple[float, QuantizedGroup] | None = None
    n_evaluations = 0
    for exponent in EXPONENT_CANDIDATES[(module, kind)]:
        integers = [quantize_tensor(value, exponent) for value in originals]
        flat = np.concatenate([q.ravel() for q in integers])
        if flat.size and int(np.abs(flat).max()) > NN_Q_MAX:
            continue  # too fine for the format
        order, n_bits = best_order(flat)
        _set_group(parameters, integers, exponent)
        evaluation = evaluate(model, target, lmbda)
        n_evaluations += 1
        cost = evaluation.loss + lmbda * n_bits / target.n_pixels
        if best is None or cost < best[0]:
            best = (
                cost,
                QuantizedGroup(
                    module=module,
                    kind=kind,
                    names=tuple(name for name, _ in parameters),
                    integers=tuple(integers),
                    exponent=exponent,
                    order=order,
                    n_bits=n_bits,
                ),
            )
    if best is None:
        raise ValueError(f"no usable quantisation step for {module} {kind}s")
    group = best[1]
    _set_group(parameters, list(group.integers), group.exponent)
    return group, n_evaluations


def quantize_networks(
    model: CoolChicModel, target: Target, lmbda: float
) -> tuple[QuantizedGroup, ...]:
    """Quantise the ARM, upsampling and synthesis in place; return what the bitstream carries.

    Every candidate step of every group is evaluated (a noisy cost curve makes early stopping
    unreliable: biases were once left at 12 bits each), in :data:`N_PASSES` passes so that
    each group's step is chosen knowing the others' final steps. After the call the model holds
    the de-quantised values, so evaluating it gives the decoder's result.
    """
    originals = {
        key: [parameter.detach().clone() for _, parameter in group_parameters(model, *key)]
        for key in NN_GROUPS
    }
    chosen: dict[tuple[str, str], QuantizedGroup] = {}
    n_evaluations = 0
    for _ in range(N_PASSES):
        for module, kind in NN_GROUPS:
            if not originals[(module, kind)]:
                chosen[(module, kind)] = QuantizedGroup(module, kind, (), (), 0, 0, 0)
                continue
            group, count = _search_group(
                model, target, lmbda, module, kind, originals[(module, kind)]
            )
            chosen[(module, kind)] = group
            n_evaluations += count
    for group in chosen.values():
        logger.debug(
            "%s %s: step 2^-%d, order %d, %d bits",
            group.module,
            group.kind,
            group.exponent,
            group.order,
            group.n_bits,
        )
    logger.debug("network quantisation: %d evaluations", n_evaluations)
    return tuple(chosen[key] for key in NN_GROUPS)
