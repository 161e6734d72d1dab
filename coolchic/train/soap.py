"""SOAP: Adam run in the eigenbasis of a Shampoo preconditioner (Vyas et al., arXiv 2409.11321).

Cool-chic 5.0 trains its network weights with SOAP and credits it, with its schedules, for
reaching a given quality in far fewer iterations than Adam. For a weight matrix ``W`` with
gradient ``G``, SOAP keeps running averages ``L ≈ E[G Gᵀ]`` and ``R ≈ E[Gᵀ G]`` and, every few
steps, their eigenvectors ``Q_L`` and ``Q_R``. The second moment is accumulated on the rotated
gradient ``Q_Lᵀ G Q_R``, where the coordinates are close to uncorrelated, so Adam's per
coordinate scaling fits the curvature far better than in the original coordinates. The
momentum is kept in the original coordinates and rotated on use, so that a basis change does
not discard it.

Here every tensor is seen as a matrix (its first dimension by the rest); a side of size one
or above :data:`MAX_PRECONDITIONED_SIDE` is not rotated. A group with ``precondition=False``
is plain Adam with decoupled weight decay: the latents take that path, as in Cool-chic 5.0
(on large tensors as torch's fused Adam kernel, :data:`FUSED_ADAM_MIN_ELEMENTS`).
The eigenvectors come from :func:`torch.linalg.eigh` on matrices of a few dozen rows, which
gives the same result on any number of threads, so a seeded encode stays reproducible.

:class:`Soap` does not derive from ``torch.optim.Optimizer``: the first call into that base
class imports ``torch._dynamo``, which costs 2.5 s per process on a 2-core host, more than a
whole ``instant`` encode of a small frame. It keeps the same ``param_groups``, ``state``,
``zero_grad`` and ``state_dict`` contract, so the trainer and the checkpoints use it alike.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

#: Sides larger than this keep the identity basis (an eigendecomposition would cost too much).
MAX_PRECONDITIONED_SIDE = 256
#: From this many elements a float32 CPU tensor's Adam update is torch's fused kernel, one
#: pass over the parameter and its moments instead of seven (the latents of a large frame;
#: element-wise, so the same bits with any thread count); smaller ones keep the Python form,
#: whose values small-frame encodes were measured with.
FUSED_ADAM_MIN_ELEMENTS = 90_000


class Soap:
    """SOAP for groups with ``precondition=True``, Adam (decoupled weight decay) for the others.

    Args:
        params: parameters or parameter groups; a group may set ``precondition``, ``betas``,
            ``weight_decay`` and ``lr``.
        lr: learning rate.
        betas: decay of the first and second moments; the preconditioner's ``L`` and ``R``
            decay with ``betas[1]`` too.
        eps: added to the square root of the second moment.
        weight_decay: decoupled, as in AdamW.
        precondition_every: steps between two refreshes of the eigenbases.
        precondition: the default of the groups.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        *,
        lr: float,
        betas: tuple[float, float] = (0.95, 0.95),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        precondition_every: int = 10,
        precondition: bool = True,
    ) -> None:
        if lr <= 0 or precondition_every < 1:
            raise ValueError("SOAP needs lr > 0 and precondition_every >= 1")
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "precondition_every": precondition_every,
            "precondition": precondition,
        }
        self.defaults = defaults
        items = list(params)
        as_groups = items if items and isinstance(items[0], dict) else [{"params": items}]
        self.param_groups: list[dict[str, Any]] = [
            {**defaults, **group, "params": list(group["params"])} for group in as_groups
        ]
        self.state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for parameter in group["params"]:
                if set_to_none:
                    parameter.grad = None
                elif parameter.grad is not None:
                    parameter.grad.zero_()

    def state_dict(self) -> dict[str, Any]:
        """``torch.optim``'s layout: parameters by their index over all groups."""
        index = {id(p): i for i, p in enumerate(self._parameters())}
        return {
            "state": {index[id(p)]: dict(s) for p, s in self.state.items()},
            "param_groups": [
                {**group, "params": [index[id(p)] for p in group["params"]]}
                for group in self.param_groups
            ],
        }

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        parameters = self._parameters()
        sizes = [len(g["params"]) for g in saved["param_groups"]]
        if sizes != [len(g["params"]) for g in self.param_groups]:
            raise ValueError("the saved optimiser state has other parameter groups")
        for group, saved_group in zip(self.param_groups, saved["param_groups"], strict=True):
            group.update({k: v for k, v in saved_group.items() if k != "params"})
        self.state = defaultdict(dict)
        for i, s in saved["state"].items():
            self.state[parameters[int(i)]] = {
                k: v.clone() if isinstance(v, Tensor) else v for k, v in s.items()
            }

    def _parameters(self) -> list[Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    @torch.no_grad()
    def step(self, closure: None = None) -> None:
        """One update of every parameter that has a gradient."""
        for group in self.param_groups:
            for parameter in group["params"]:
                if parameter.grad is None:
                    continue
                if group["weight_decay"]:
                    parameter.mul_(1.0 - group["lr"] * group["weight_decay"])
                if group["precondition"]:
                    self._soap_update(parameter, group)
                else:
                    self._adam_update(parameter, group)

    def _adam_update(self, parameter: Tensor, group: dict[str, Any]) -> None:
        state = self.state[parameter]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(parameter)
            state["exp_avg_sq"] = torch.zeros_like(parameter)
        state["step"] += 1
        beta1, beta2 = group["betas"]
        grad = parameter.grad
        if _fusable_adam(parameter):
            torch._fused_adam_(
                [parameter],
                [grad],
                [state["exp_avg"]],
                [state["exp_avg_sq"]],
                [],
                [torch.tensor(float(state["step"]))],
                lr=group["lr"],
                beta1=beta1,
                beta2=beta2,
                weight_decay=0.0,  # decoupled: applied by step() already
                eps=group["eps"],
                amsgrad=False,
                maximize=False,
            )
            return
        state["exp_avg"].lerp_(grad, 1.0 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
        step = state["step"]
        denominator = (state["exp_avg_sq"] / (1.0 - beta2**step)).sqrt_().add_(group["eps"])
        parameter.addcdiv_(state["exp_avg"], denominator, value=-group["lr"] / (1.0 - beta1**step))

    def _soap_update(self, parameter: Tensor, group: dict[str, Any]) -> None:
        grad = parameter.grad.reshape(parameter.shape[0], -1)
        state = self.state[parameter]
        beta1, beta2 = group["betas"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(grad)
            state["exp_avg_sq"] = torch.zeros_like(grad)
            state["gram_left"] = _gram_or_none(grad.shape[0], grad)
            state["gram_right"] = _gram_or_none(grad.shape[1], grad)
            _accumulate(state, grad, 0.0)
            _refresh_bases(state)
        state["step"] += 1
        step = state["step"]
        left, right = state["basis_left"], state["basis_right"]
        state["exp_avg"].lerp_(grad, 1.0 - beta1)
        rotated = _rotate(grad, left, right)
        state["exp_avg_sq"].mul_(beta2).addcmul_(rotated, rotated, value=1.0 - beta2)
        momentum = _rotate(state["exp_avg"], left, right) / (1.0 - beta1**step)
        denominator = (state["exp_avg_sq"] / (1.0 - beta2**step)).sqrt_().add_(group["eps"])
        update = _rotate_back(momentum / denominator, left, right)
        parameter.add_(update.reshape(parameter.shape), alpha=-group["lr"])
        if step > 1:
            _accumulate(state, grad, beta2)
        if step % group["precondition_every"] == 0:
            _refresh_bases(state)


def _fusable_adam(parameter: Tensor) -> bool:
    return (
        parameter.numel() >= FUSED_ADAM_MIN_ELEMENTS
        and parameter.dtype == torch.float32
        and parameter.device.type == "cpu"
        and parameter.grad is not None
        and parameter.grad.dtype == torch.float32
    )


def _gram_or_none(side: int, like: Tensor) -> Tensor | None:
    if side == 1 or side > MAX_PRECONDITIONED_SIDE:
        return None
    return torch.zeros(side, side, dtype=like.dtype, device=like.device)


def _accumulate(state: dict[str, Any], grad: Tensor, beta: float) -> None:
    """``L ← β L + (1 − β) G Gᵀ`` and ``R ← β R + (1 − β) Gᵀ G`` (where kept)."""
    if state["gram_left"] is not None:
        state["gram_left"].mul_(beta).addmm_(grad, grad.T, alpha=1.0 - beta)
    if state["gram_right"] is not None:
        state["gram_right"].mul_(beta).addmm_(grad.T, grad, alpha=1.0 - beta)


def _refresh_bases(state: dict[str, Any]) -> None:
    for side in ("left", "right"):
        gram = state[f"gram_{side}"]
        if gram is None:
            state[f"basis_{side}"] = None
        elif bool(torch.isfinite(gram).all()):
            # float64 for a well-defined basis even when eigenvalues nearly coincide.
            state[f"basis_{side}"] = torch.linalg.eigh(gram.double())[1].to(gram.dtype)
        elif f"basis_{side}" not in state:
            state[f"basis_{side}"] = torch.eye(gram.shape[0], dtype=gram.dtype)
        # else: a non-finite gradient reached the averages; keep the last basis, so that the
        # trainer sees the non-finite loss and recovers (it builds a new optimiser)


def _rotate(matrix: Tensor, left: Tensor | None, right: Tensor | None) -> Tensor:
    """``Q_Lᵀ M Q_R``, skipping the identity sides."""
    if left is not None:
        matrix = left.T @ matrix
    if right is not None:
        matrix = matrix @ right
    return matrix


def _rotate_back(matrix: Tensor, left: Tensor | None, right: Tensor | None) -> Tensor:
    """``Q_L M Q_Rᵀ``, the inverse of :func:`_rotate`."""
    if left is not None:
        matrix = left @ matrix
    if right is not None:
        matrix = matrix @ right.T
    return matrix
