"""Choose the quantisation steps of the network parameters by rate-distortion cost (spec §3).

Each (module, kind) group — ARM weights, ARM biases, upsampling filters, synthesis weights,
synthesis biases — gets one step ``2^-e``. Modules are visited in coding order; inside a
module the weights are chosen first (biases still at full precision), then the biases. For
each candidate exponent the group is quantised from its full-precision copy, the model is
evaluated as the decoder sees it, and the cost ``loss + λ · bits(group) / (H·W)`` is compared;
bits are the exact signed exp-Golomb length at the best order. Exponents are tried from fine to
coarse (coarse steps can zero a whole group, whose cost plateaus would stop a coarse-to-fine
scan early) and the scan stops once :data:`PATIENCE` candidates in a row cost more than the best
so far, which keeps the number of evaluations small at large image sizes.
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
PATIENCE = 2


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


def quantize_networks(
    model: CoolChicModel, target: Target, lmbda: float
) -> tuple[QuantizedGroup, ...]:
    """Quantise the ARM, upsampling and synthesis in place; return what the bitstream carries.

    After the call the model holds the de-quantised values, so evaluating it gives the
    decoder's result.
    """
    chosen: list[QuantizedGroup] = []
    n_evaluations = 0
    for module, kind in NN_GROUPS:
        parameters = group_parameters(model, module, kind)
        if not parameters:
            chosen.append(QuantizedGroup(module, kind, (), (), 0, 0, 0))
            continue
        originals = [parameter.detach().clone() for _, parameter in parameters]
        best: tuple[float, QuantizedGroup] | None = None
        rises = 0
        for exponent in reversed(EXPONENT_CANDIDATES[(module, kind)]):
            integers = [quantize_tensor(value, exponent) for value in originals]
            flat = np.concatenate([q.ravel() for q in integers])
            if flat.size and int(np.abs(flat).max()) > NN_Q_MAX:
                continue  # too fine for the format: coarser steps come next
            order, n_bits = best_order(flat)
            _set_group(parameters, integers, exponent)
            evaluation = evaluate(model, target, lmbda)
            n_evaluations += 1
            cost = evaluation.loss + lmbda * n_bits / target.n_pixels
            candidate = QuantizedGroup(
                module=module,
                kind=kind,
                names=tuple(name for name, _ in parameters),
                integers=tuple(integers),
                exponent=exponent,
                order=order,
                n_bits=n_bits,
            )
            if best is None or cost < best[0]:
                best = (cost, candidate)
                rises = 0
            else:
                rises += 1
                if rises >= PATIENCE:
                    break
        if best is None:
            raise ValueError(f"no usable quantisation step for {module} {kind}s")
        group = best[1]
        _set_group(parameters, list(group.integers), group.exponent)
        chosen.append(group)
        logger.debug(
            "%s %s: step 2^-%d, order %d, %d bits",
            module,
            kind,
            group.exponent,
            group.order,
            group.n_bits,
        )
    logger.debug("network quantisation: %d evaluations", n_evaluations)
    return tuple(chosen)
