"""The overfitting loop: warm-up among candidates, scheduled phases, patience, recovery.

Every ``eval_every`` iterations the model is evaluated as the decoder will see it (true
rounding of the latents, output clamped and rounded to the bit depth); the best state is kept
and restored at the end of each phase. A non-finite loss restores the best state and halves the
learning rate; after :data:`MAX_RECOVERIES` of those the run raises :class:`TrainingDiverged`
so that the caller can start again with another seed.

With a :class:`~coolchic.train.checkpoint.Checkpoint`, the state is saved at the end of the
warm-up, at each phase change and periodically within the phases, and a run given a saved
:class:`~coolchic.train.checkpoint.TrainingState` continues from it bit for bit.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from coolchic.allocator import keep_freed_memory
from coolchic.defaults import check_lmbda
from coolchic.errors import EncodingError
from coolchic.model.coolchic import MODULE_NAMES, CoolChicModel
from coolchic.model.quantizer import INFERENCE, QuantizerSettings
from coolchic.train.checkpoint import Checkpoint, TrainingState
from coolchic.train.loss import (
    Target,
    add_network_rate_gradient,
    decoded_distortion,
    distortion,
    network_rate_weight,
    psnr_db,
)
from coolchic.train.progress import ProgressCallback, ProgressEvent, ignore_progress
from coolchic.train.recipes import NETWORK_LR_SCALE, Phase, Recipe
from coolchic.train.soap import Soap

logger = logging.getLogger(__name__)

MAX_RECOVERIES = 3
GRADIENT_CLIP_NORM = 0.1

ModelFactory = Callable[[int], CoolChicModel]

#: Rate control during the main phase: (share of the phase done, PSNR, latent bpp, λ) → λ.
LambdaUpdate = Callable[[float, float, float, float], float]


class TrainingDiverged(EncodingError):
    """The loss stayed non-finite after every recovery attempt."""


@dataclass(frozen=True)
class Evaluation:
    """The model as the decoder sees it: true integers, rounded output."""

    loss: float
    mse: float
    bpp: float

    @property
    def psnr_db(self) -> float:
        return psnr_db(self.mse)


@torch.no_grad()
def evaluate(model: CoolChicModel, target: Target, lmbda: float) -> Evaluation:
    """Rate-distortion cost of the model with rounded latents and a rounded output."""
    output = model(quantizer=INFERENCE)
    mse = float(decoded_distortion(output.x_hat, target))
    bpp = float(output.rate_bits) / target.n_pixels
    return Evaluation(loss=mse + lmbda * bpp, mse=mse, bpp=bpp)


def _snapshot(model: nn.Module) -> dict[str, Tensor]:
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def _cosine(start: float, end: float, fraction: float) -> float:
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * min(1.0, fraction)))


def _linear(bounds: tuple[float, float], fraction: float) -> float:
    return bounds[0] + (bounds[1] - bounds[0]) * min(1.0, fraction)


def select_trained(
    model: CoolChicModel, modules: tuple[str, ...]
) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Let only ``modules`` train; return (their network parameters, all their parameters).

    A tuple in MODULE_NAMES order, never a set: the parameter order reaches the optimiser and
    the gradient clipping, and set order changes with each process's hash seed.
    """
    trained = tuple(name for name in MODULE_NAMES if name in modules)
    groups = model.param_groups()
    for name in MODULE_NAMES:
        for parameter in groups[name]:
            parameter.requires_grad_(name in trained)
    networks = [p for name in trained if name != "latents" for p in groups[name]]
    parameters = [p for name in trained for p in groups[name]]
    return networks, parameters


def make_optimizer(
    networks: list[nn.Parameter],
    parameters: list[nn.Parameter],
    lr: float,
    network_lr_scale: float = NETWORK_LR_SCALE,
) -> Soap:
    """The optimiser of a phase: SOAP on the network weights, Adam on the latents.

    As in Cool-chic 5.0. The networks learn ``network_lr_scale`` times faster than the
    latents: at λ = 1e-3 on four photographs SOAP at 4x lowered the rate-distortion cost by
    3.5 to 8 % against Adam at the same wall time, while at the latents' rate it was worse
    than Adam (BENCHMARKS.md, 2026-12-03).
    """
    network_ids = {id(p) for p in networks}
    latents = [p for p in parameters if id(p) not in network_ids]
    groups: list[dict[str, Any]] = []
    if networks:
        groups.append({"params": networks, "relative_lr": network_lr_scale})
    if latents:
        groups.append(
            {"params": latents, "precondition": False, "betas": (0.9, 0.999), "weight_decay": 0.0}
        )
    optimizer = Soap(groups, lr=lr)
    set_learning_rate(optimizer, lr)
    return optimizer


def set_learning_rate(optimizer: Soap, lr: float) -> None:
    """Set the schedule's learning rate, scaled per group."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("relative_lr", 1.0)


def phase_quantizer(phase: Phase, fraction: float) -> QuantizerSettings:
    """The latent quantiser ``fraction`` of the way through ``phase``."""
    if phase.quantizer in ("softround", "noise", "ste"):
        return QuantizerSettings(
            kind=phase.quantizer,
            temperature=_linear(phase.temperature, fraction),
            noise="gaussian",
            noise_parameter=_linear(phase.noise_sigma, fraction),
        )
    return QuantizerSettings(kind=phase.quantizer)


def training_step(
    model: CoolChicModel,
    optimizer: Soap,
    networks: list[nn.Parameter],
    *,
    target: Target,
    lmbda: float,
    quantizer: QuantizerSettings,
    generator: torch.Generator,
) -> Tensor:
    """One iteration: forward, ``MSE + λ · bpp``, backward, clipping, optimiser step.

    The one home of the step, so that timing it (:mod:`coolchic.forecast`) times the encode's.
    """
    optimizer.zero_grad(set_to_none=True)
    output = model(quantizer=quantizer, generator=generator)
    loss = distortion(output.x_hat, target) + lmbda * (output.rate_bits / target.n_pixels)
    loss.backward()
    if networks:
        if bits_weight := network_rate_weight(lmbda):
            add_network_rate_gradient(model, bits_weight * lmbda / target.n_pixels)
        torch.nn.utils.clip_grad_norm_(networks, GRADIENT_CLIP_NORM)
    optimizer.step()
    return loss


@dataclass
class _Candidate:
    model: CoolChicModel
    best_state: dict[str, Tensor]
    best: Evaluation


class Trainer:
    """Runs one recipe on one target.

    Args:
        target: the image.
        lmbda: λ of ``loss = MSE + λ · bpp``.
        recipe: the schedule.
        model_factory: builds a freshly initialised model from a seed.
        seed: base seed; candidate k of the warm-up uses ``seed * 1000 + k``.
        progress: receives :class:`ProgressEvent` at validation points.
        checkpoint: where to save the state as the run goes (None: never).
        resume: a state saved by an earlier run of the same encode, to continue from.
        initial: trained weights to start from instead of a warm-up (a recipe without
            warm-up stages, :func:`coolchic.train.recipes.continuation`).
        lmbda_update: called at each evaluation of the first main phase; the λ it returns
            is used from then on (rate control, :mod:`coolchic.ratecontrol`).
    """

    def __init__(
        self,
        *,
        target: Target,
        lmbda: float,
        recipe: Recipe,
        model_factory: ModelFactory,
        seed: int = 0,
        progress: ProgressCallback = ignore_progress,
        start_lr: float | None = None,
        checkpoint: Checkpoint | None = None,
        resume: TrainingState | None = None,
        initial: dict[str, Tensor] | None = None,
        lmbda_update: LambdaUpdate | None = None,
    ) -> None:
        check_lmbda(lmbda)
        if (initial is None) == recipe.warmup.empty and resume is None:
            raise ValueError("a recipe without warm-up needs initial weights, and only it")
        self.target = target
        self.lmbda = lmbda
        self.recipe = recipe
        self.model_factory = model_factory
        self.seed = seed
        self.generator = torch.Generator(device=target.full.device).manual_seed(seed)
        self.progress = progress
        self.lr_scale = 1.0 if start_lr is None else start_lr / recipe.warmup.lr
        self.iterations_done = 0
        self.recoveries = 0
        self.checkpoint = checkpoint
        self.resume = resume
        self.initial = initial
        self.lmbda_update = lmbda_update
        self._clock_start = time.perf_counter()
        self._last_event = (self._clock_start, 0)

    # ------------------------------------------------------------------ public
    def run(self) -> tuple[CoolChicModel, Evaluation]:
        """Train and return the best model found with its evaluation."""
        keep_freed_memory()
        resume = self.resume
        if resume is None and self.initial is not None:
            candidate = self._from_weights(self.initial)
            first = 0
        elif resume is None:
            self._emit("start", "warmup", "candidates")
            candidate = self._warmup()
            self._save(candidate, phase_index=0)
            first = 0
        else:
            candidate = self._restore(resume)
            first = resume.phase_index
        for index in range(first, len(self.recipe.phases)):
            phase = self.recipe.phases[index]
            continued = resume if resume is not None and index == resume.phase_index else None
            self._train_phase(candidate, phase, index=index, resume=continued)
            self._emit("phase_end", "train", phase.name, candidate.best)
            self._save(candidate, phase_index=index + 1)
        candidate.model.load_state_dict(candidate.best_state)
        return candidate.model, candidate.best

    # ------------------------------------------------------------- checkpoints
    def _save(
        self,
        candidate: _Candidate,
        *,
        phase_index: int,
        iteration: int = 0,
        since_best: int = 0,
        optimizer: Soap | None = None,
    ) -> None:
        if self.checkpoint is None:
            return
        self.checkpoint.save(
            TrainingState(
                seed=self.seed,
                phase_index=phase_index,
                iteration=iteration,
                since_best=since_best,
                iterations_done=self.iterations_done,
                recoveries=self.recoveries,
                lr_scale=self.lr_scale,
                model=candidate.model.state_dict(),
                best_state=candidate.best_state,
                best=(candidate.best.loss, candidate.best.mse, candidate.best.bpp),
                optimizer=None if optimizer is None else optimizer.state_dict(),
                generator=self.generator.get_state(),
                torch_rng=torch.get_rng_state(),
                lmbda=self.lmbda,
            )
        )

    def _restore(self, state: TrainingState) -> _Candidate:
        """The candidate, counters and generators as they were when ``state`` was saved."""
        model = self.model_factory(state.seed)
        model.load_state_dict(state.model)
        device = self.target.full.device
        best_state = {key: value.to(device) for key, value in state.best_state.items()}
        self.generator.set_state(state.generator)
        torch.set_rng_state(state.torch_rng)
        self.iterations_done = state.iterations_done
        self.recoveries = state.recoveries
        self.lr_scale = state.lr_scale
        self.lmbda = state.lmbda
        self._last_event = (time.perf_counter(), self.iterations_done)
        phase = self.recipe.phases[min(state.phase_index, len(self.recipe.phases) - 1)].name
        logger.info(
            "resumed from a checkpoint at iteration %d of %d (%s)",
            state.iterations_done,
            self.recipe.iterations,
            phase,
        )
        self._emit(
            "start",
            "train",
            phase,
            message=f"resumed from a checkpoint at iteration {state.iterations_done}",
        )
        return _Candidate(model=model, best_state=best_state, best=Evaluation(*state.best))

    # ----------------------------------------------------------------- warm-up
    def _warmup(self) -> _Candidate:
        warmup = self.recipe.warmup
        phase = Phase(
            name="warmup",
            iterations=1,
            lr_start=warmup.lr,
            lr_end=warmup.lr,
            temperature=(warmup.temperature, warmup.temperature),
            noise_sigma=(warmup.noise_sigma, warmup.noise_sigma),
        )
        n_first = warmup.stages[0][0]
        candidates = [self._new_candidate(self.seed * 1000 + k) for k in range(n_first)]
        for stage_index, (n_keep, iterations) in enumerate(warmup.stages):
            candidates = sorted(candidates, key=lambda c: c.best.loss)[:n_keep]
            stage_phase = Phase(
                name=f"warmup{stage_index + 1}",
                iterations=iterations,
                lr_start=phase.lr_start,
                lr_end=phase.lr_end,
                temperature=phase.temperature,
                noise_sigma=phase.noise_sigma,
                eval_every=iterations,
            )
            for candidate in candidates:
                self._train_phase(candidate, stage_phase)
        best = min(candidates, key=lambda c: c.best.loss)
        best.model.load_state_dict(best.best_state)
        return best

    def _from_weights(self, weights: dict[str, Tensor]) -> _Candidate:
        model = self.model_factory(self.seed)
        model.load_state_dict(weights)
        evaluation = evaluate(model, self.target, self.lmbda)
        return _Candidate(model=model, best_state=_snapshot(model), best=evaluation)

    def _new_candidate(self, seed: int) -> _Candidate:
        torch.manual_seed(seed)
        model = self.model_factory(seed)
        evaluation = evaluate(model, self.target, self.lmbda)
        return _Candidate(model=model, best_state=_snapshot(model), best=evaluation)

    # ------------------------------------------------------------------ phases
    def _train_phase(
        self,
        candidate: _Candidate,
        phase: Phase,
        *,
        index: int | None = None,
        resume: TrainingState | None = None,
    ) -> None:
        """Train ``candidate`` through ``phase``: a warm-up stage, or main phase ``index`` (given
        only for those, which checkpoint)."""
        stage = "warmup" if index is None else "train"
        model = candidate.model
        networks, parameters = select_trained(model, phase.modules)
        scale = self.recipe.network_lr_scale
        optimizer = make_optimizer(networks, parameters, phase.lr_start * self.lr_scale, scale)
        since_best = 0
        iteration = 0
        if resume is not None:
            iteration, since_best = resume.iteration, resume.since_best
            if resume.optimizer is not None:
                optimizer.load_state_dict(resume.optimizer)
        checkpoint = self.checkpoint
        try:
            while iteration < phase.iterations:
                if checkpoint is not None and index is not None and checkpoint.due():
                    self._save(
                        candidate,
                        phase_index=index,
                        iteration=iteration,
                        since_best=since_best,
                        optimizer=optimizer,
                    )
                loss, learning_rate = self._step(model, optimizer, networks, phase, iteration)
                iteration += 1
                self.iterations_done += 1
                since_best += 1
                if iteration % phase.eval_every and iteration != phase.iterations:
                    continue
                evaluation = evaluate(model, self.target, self.lmbda)
                if not (math.isfinite(evaluation.loss) and math.isfinite(float(loss.detach()))):
                    self._recover(candidate, stage, phase)
                    optimizer = make_optimizer(networks, parameters, learning_rate * 0.5, scale)
                    continue
                if self.lmbda_update is not None and index == 0:
                    evaluation = self._update_lmbda(
                        candidate, evaluation, iteration / phase.iterations
                    )
                if evaluation.loss < candidate.best.loss:
                    candidate.best = evaluation
                    candidate.best_state = _snapshot(model)
                    since_best = 0
                self._emit("progress", stage, phase.name, evaluation, learning_rate)
                if phase.patience is not None and since_best > phase.patience:
                    logger.debug("phase %s stopped by patience at %d", phase.name, iteration)
                    self.iterations_done += phase.iterations - iteration
                    break
        finally:
            for parameter in model.parameters():
                parameter.requires_grad_(True)
        model.load_state_dict(candidate.best_state)

    def _update_lmbda(
        self, candidate: _Candidate, evaluation: Evaluation, fraction: float
    ) -> Evaluation:
        """Let rate control move λ; the best so far and ``evaluation`` are re-scored at it."""
        assert self.lmbda_update is not None
        lmbda = self.lmbda_update(fraction, evaluation.psnr_db, evaluation.bpp, self.lmbda)
        check_lmbda(lmbda)
        if lmbda == self.lmbda:
            return evaluation
        self.lmbda = lmbda
        best = candidate.best
        candidate.best = Evaluation(best.mse + lmbda * best.bpp, best.mse, best.bpp)
        return Evaluation(evaluation.mse + lmbda * evaluation.bpp, evaluation.mse, evaluation.bpp)

    def _step(
        self,
        model: CoolChicModel,
        optimizer: Soap,
        networks: list[nn.Parameter],
        phase: Phase,
        iteration: int,
    ) -> tuple[Tensor, float]:
        """Iteration ``iteration`` of ``phase`` at its scheduled learning rate and quantiser;
        returns the loss and that learning rate."""
        fraction = iteration / phase.iterations
        learning_rate = _cosine(phase.lr_start, phase.lr_end, fraction) * self.lr_scale
        set_learning_rate(optimizer, learning_rate)
        loss = training_step(
            model,
            optimizer,
            networks,
            target=self.target,
            lmbda=self.lmbda,
            quantizer=phase_quantizer(phase, fraction),
            generator=self.generator,
        )
        return loss, learning_rate

    def _recover(self, candidate: _Candidate, stage: str, phase: Phase) -> None:
        self.recoveries += 1
        if self.recoveries > MAX_RECOVERIES:
            raise TrainingDiverged(
                f"training diverged (non-finite loss) {self.recoveries} times in phase "
                f"{phase.name}, even after restoring the best state and lowering the "
                "learning rate"
            )
        candidate.model.load_state_dict(candidate.best_state)
        self.lr_scale *= 0.5
        message = (
            f"non-finite loss in {phase.name}: best state restored, learning rate halved "
            f"(recovery {self.recoveries}/{MAX_RECOVERIES})"
        )
        logger.warning("%s", message)
        self._emit("warning", stage, phase.name, message=message)

    # ---------------------------------------------------------------- progress
    def _emit(
        self,
        kind: str,
        stage: str,
        phase: str,
        evaluation: Evaluation | None = None,
        learning_rate: float | None = None,
        *,
        message: str = "",
    ) -> None:
        now = time.perf_counter()
        last_time, last_iterations = self._last_event
        rate = None
        if now > last_time and self.iterations_done > last_iterations:
            rate = (self.iterations_done - last_iterations) / (now - last_time)
        elapsed = now - self._clock_start
        overall = self.iterations_done / elapsed if elapsed > 0 and self.iterations_done else None
        remaining = max(0, self.recipe.iterations - self.iterations_done)
        self._last_event = (now, self.iterations_done)
        self.progress(
            ProgressEvent(
                kind=kind,  # type: ignore[arg-type]
                stage=stage,
                phase=phase,
                iteration=self.iterations_done,
                total_iterations=self.recipe.iterations,
                loss=evaluation.loss if evaluation else None,
                psnr_db=evaluation.psnr_db if evaluation else None,
                bpp=evaluation.bpp if evaluation else None,
                learning_rate=learning_rate,
                iterations_per_s=rate,
                eta_s=remaining / overall if overall else None,
                message=message,
            )
        )
