"""Choose the quantisation steps of the network parameters by rate-distortion cost (encoder).

Each (module, kind) group gets one step ``2^-e`` (:mod:`coolchic.nnquant.params`). Modules are
visited in coding order; inside a module the weights are chosen first (biases still at full
precision), then the biases. For each candidate exponent the group is quantised from its
full-precision copy, the model is evaluated as the decoder sees it, and the cost
``loss + λ · bits(group) / (H·W)`` is compared; bits are the exact length of the group in its
shortest code (exp-Golomb or Rice, :func:`~coolchic.bitstream.nn_params.best_code`). The
evaluations are cheap next to training (about 150 forward passes without gradient).

Then RDOQ (Cool-chic v5) moves single integers by a few steps where that lowers the same
cost: a few hundred more evaluations, most of them partial (the ARM only changes the rate, the
synthesis only the distortion), for about 1 % lower cost at low rates, where a 192x128 image
spends a third of its bits on the networks. Last, :func:`rdoq_improbable_latents` tries the
latents that the quantised entropy model charges most at a cheaper value. The quantisation is
summed up in ``docs/design.md``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable

import numpy as np
import torch

from coolchic.bitstream.constants import NN_GROUPS, NN_Q_MAX
from coolchic.bitstream.nn_params import GroupKey, best_code, fits
from coolchic.model.coolchic import CoolChicModel
from coolchic.nnquant.params import (
    QuantizedGroup,
    QuantizedNetworks,
    coded_flat,
    dequantize,
    parameter_layout,
    predicted_integers,
    quantize,
)
from coolchic.train.loss import Target, decoded_distortion
from coolchic.train.recipes import Recipe
from coolchic.train.trainer import evaluate

logger = logging.getLogger(__name__)

#: Candidate step exponents per group (step = 2^-e), from Cool-chic 5.0's tables.
EXPONENT_CANDIDATES: dict[GroupKey, range] = {
    ("arm", "weight"): range(0, 9),
    ("arm", "bias"): range(0, 17),
    ("upsampling", "weight"): range(0, 13),
    ("upsampling", "bias"): range(0, 1),
    ("synthesis", "weight"): range(0, 13),
    ("synthesis", "bias"): range(0, 25),
}
#: Passes over the groups: the second re-chooses each step with the others quantised.
N_PASSES = 2
#: RDOQ moves an integer by at most this many steps in either direction (v5 tries up to 15;
#: a smaller bound caps the number of evaluations).
RDOQ_MAX_MOVE = 4
#: RDOQ runs up to this many pixels. It costs one (partial) evaluation per move tried: about
#: 2 s on a 192x128 image, but on a 1152x768 image with the large decoder (~2,000 integers,
#: ~0.5 s a synthesis pass) it would cost more than the 10 % of an encode that the
#: post-training steps may take, for a smaller gain (the networks are a smaller share there).
RDOQ_MAX_PIXELS = 250_000


def takes_rdoq(recipe: Recipe, pixels: int) -> bool:
    """Whether an encode with ``recipe`` runs both RDOQs (networks and latents) after training."""
    return recipe.rdoq and pixels <= RDOQ_MAX_PIXELS


def group_parameters(
    model: CoolChicModel, module: str, kind: str
) -> list[tuple[str, torch.Tensor]]:
    """The named parameters of one group, in coding order.

    The names and their order come from :func:`~coolchic.nnquant.params.parameter_layout`,
    which the decoder builds its networks from.
    """
    parent = model.module(module)  # type: ignore[arg-type]
    return [
        (name, parent.get_parameter(name))
        for name, _ in parameter_layout(model.config)[(module, kind)]
    ]


def _set_group(
    parameters: list[tuple[str, torch.Tensor]], integers: tuple[np.ndarray, ...], exponent: int
) -> None:
    with torch.no_grad():
        for (_, parameter), q in zip(parameters, integers, strict=True):
            parameter.copy_(torch.from_numpy(dequantize(q, exponent)).to(parameter.dtype))


def _search_group(
    model: CoolChicModel,
    target: Target,
    lmbda: float,
    key: GroupKey,
    originals: list[np.ndarray],
) -> tuple[QuantizedGroup, int]:
    """The exponent of one group with the lowest RD cost, the others held as they are."""
    parameters = group_parameters(model, *key)
    names = tuple(name for name, _ in parameters)
    loss = _loss_function(model, target, lmbda, key[0])
    best: tuple[float, QuantizedGroup] | None = None
    n_evaluations = 0
    for exponent in EXPONENT_CANDIDATES[key]:
        integers = tuple(quantize(value, exponent) for value in originals)
        predictions = tuple(predicted_integers(model.config, *key, exponent))
        if not fits(coded_flat(integers, predictions)):
            continue  # too fine for the format
        group = QuantizedGroup.best_coded(key, names, integers, exponent, predictions)
        _set_group(parameters, integers, exponent)
        n_evaluations += 1
        cost = loss() + lmbda * group.n_bits / target.n_pixels
        if best is None or cost < best[0]:
            best = (cost, group)
    if best is None:
        raise ValueError(f"no usable quantisation step for {key[0]} {key[1]}s")
    group = best[1]
    _set_group(parameters, group.integers, group.exponent)
    return group, n_evaluations


def _loss_function(
    model: CoolChicModel, target: Target, lmbda: float, module: str
) -> Callable[[], float]:
    """``evaluate(model, target, lmbda).loss`` for a model where only ``module`` changes.

    The ARM only changes the rate, the upsampling and the synthesis only the distortion, so
    the other half of the forward pass is computed once, and so is the synthesis' input (v5's
    partial scores): the step search and RDOQ evaluate the cost hundreds of times.
    """
    latents = model.quantized_latents()
    grids = latents[: model.config.n_grids]  # the hyper grids only reach the ARM

    @torch.no_grad()
    def bpp() -> float:
        return float(model.rate_of_latents(latents)) / target.n_pixels

    @torch.no_grad()
    def mse(features: torch.Tensor | None = None) -> float:
        if features is None:
            features = model.upsampling(grids)
        return float(decoded_distortion(model.synthesis(features), target))

    if module == "arm":
        fixed_mse = mse()
        return lambda: fixed_mse + lmbda * bpp()
    fixed_bpp = bpp()
    if module == "synthesis":
        with torch.no_grad():
            features = model.upsampling(grids)
        return lambda: mse(features) + lmbda * fixed_bpp
    return lambda: mse() + lmbda * fixed_bpp


def _rdoq_group(
    model: CoolChicModel, target: Target, lmbda: float, group: QuantizedGroup
) -> tuple[QuantizedGroup, int]:
    """Rate-distortion optimised quantisation of one group (Cool-chic v5's RDOQ).

    Rounding to the nearest step ignores both the rate of each integer and how the networks
    compensate each other's rounding errors. Each integer in turn is moved by ±1, ±2, … (a
    direction stops at its first non-improving move) and a move is kept when
    ``loss + λ · bits(group) / (H·W)`` drops. On a 192x128 image the parameters are about a
    tenth of the file at high rates and a third at low rates, so their bits matter.
    """
    parameters = [p for _, p in group_parameters(model, group.module, group.kind)]
    integers = [q.copy() for q in group.integers]
    scale = 2.0**-group.exponent
    loss = _loss_function(model, target, lmbda, group.module)
    n_evaluations = 0

    def cost() -> float:
        nonlocal n_evaluations
        n_evaluations += 1
        _, n_bits = best_code(coded_flat(integers, group.predictions))
        return loss() + lmbda * n_bits / target.n_pixels

    def put(parameter: torch.Tensor, flat: np.ndarray, index: int, value: int) -> None:
        flat[index] = value
        with torch.no_grad():
            parameter.view(-1)[index] = value * scale

    best = cost()
    for parameter, q, prediction in zip(parameters, integers, group.predictions, strict=True):
        flat = q.reshape(-1)  # a view: edits reach ``integers``
        predicted = prediction.reshape(-1)
        for index in range(flat.size):
            start = kept = int(flat[index])
            for direction in (1, -1):
                for move in range(1, RDOQ_MAX_MOVE + 1):
                    value = start + direction * move
                    if abs(value - int(predicted[index])) > NN_Q_MAX:
                        break
                    put(parameter, flat, index, value)
                    trial = cost()
                    if trial >= best:
                        break
                    best, kept = trial, value
                if kept != start:
                    break  # improved upwards: no need to try downwards
            put(parameter, flat, index, kept)
    code, n_bits = best_code(coded_flat(integers, group.predictions))
    result = dataclasses.replace(group, integers=tuple(integers), code=code, n_bits=n_bits)
    return result, n_evaluations


#: Latents that the quantised entropy model charges at least this many bits are candidates for
#: :func:`rdoq_improbable_latents`.
IMPROBABLE_LATENT_BITS = 10.0
#: At most this many candidates, the costliest: each costs one or two evaluations, and a
#: trained model has a few dozen (a barely trained one can have thousands).
MAX_IMPROBABLE_LATENTS = 64


@torch.no_grad()
def rdoq_improbable_latents(model: CoolChicModel, target: Target, lmbda: float) -> int:
    """Move the latents the final entropy model finds improbable to a cheaper value where that
    lowers ``loss + λ · bits``; returns how many moved.

    Training ends with the latents fixed and only the networks adapting, and it prices a latent
    under the float networks. Under the quantised ARM a few dozen latents of a 192x128 image
    cost 10 to 24 bits each: a lone non-zero value where the model is sure of 0. Each, costliest
    first, is tried at 0 and then one step towards 0, and kept there if the whole cost (its
    neighbours' rates and the decoded image included) drops. Run after
    :func:`quantize_networks`, on the networks the decoder will have: about 0.5 % lower cost at
    a fraction of a second on a 192x128 image (BENCHMARKS.md, 2026-12-06 09:30).
    """
    latents = model.latents
    flat = torch.round(latents.scaled_flat())
    bits = model.latent_bits()
    candidates = torch.nonzero((bits >= IMPROBABLE_LATENT_BITS) & (flat != 0)).flatten()
    order = torch.argsort(bits[candidates], descending=True, stable=True)
    candidates = candidates[order[:MAX_IMPROBABLE_LATENTS]]
    best = evaluate(model, target, lmbda).loss
    moved = 0
    for index in candidates.tolist():
        value = float(flat[index])
        kept = value
        for trial in dict.fromkeys((0.0, value - math.copysign(1.0, value))):
            latents.set_quantized(index, trial)
            cost = evaluate(model, target, lmbda).loss
            if cost < best:
                best, kept = cost, trial
                break
        latents.set_quantized(index, kept)
        moved += kept != value
    logger.debug("latent RDOQ: %d of %d improbable latents moved", moved, len(candidates))
    return moved


def quantize_networks(
    model: CoolChicModel, target: Target, lmbda: float, *, rdoq: bool = True
) -> QuantizedNetworks:
    """Quantise the ARM, upsampling and synthesis in place; return what the bitstream carries.

    Every candidate step of every group is evaluated (a noisy cost curve makes early stopping
    unreliable: biases were once left at 12 bits each), in :data:`N_PASSES` passes so that
    each group's step is chosen knowing the others' final steps. With ``rdoq`` the integers
    of each group are then refined one by one (:func:`_rdoq_group`). After the call the model
    holds the de-quantised values, so evaluating it gives the decoder's result.
    """
    originals = {
        key: [p.detach().cpu().numpy().astype(np.float64) for _, p in group_parameters(model, *key)]
        for key in NN_GROUPS
    }
    chosen = {key: QuantizedGroup.empty(key) for key in NN_GROUPS}
    n_evaluations = 0
    for _ in range(N_PASSES):
        for key in NN_GROUPS:
            if originals[key]:
                chosen[key], count = _search_group(model, target, lmbda, key, originals[key])
                n_evaluations += count
    if rdoq:
        for key in NN_GROUPS:
            if chosen[key].integers:
                chosen[key], count = _rdoq_group(model, target, lmbda, chosen[key])
                n_evaluations += count
    for group in chosen.values():
        logger.debug(
            "%s %s: step 2^-%d, %s %d, %d bits",
            group.module,
            group.kind,
            group.exponent,
            "Rice parameter" if group.code.rice else "exp-Golomb order",
            group.code.order,
            group.n_bits,
        )
    logger.debug("network quantisation: %d evaluations", n_evaluations)
    return QuantizedNetworks(tuple(chosen[key] for key in NN_GROUPS))
