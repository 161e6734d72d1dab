"""Encoding recipes: the training schedule, from ``instant`` (tests) to ``placebo``.

Each recipe is a warm-up (several random initialisations trained briefly, the best kept at
each stage) followed by phases. The schedule follows Cool-chic 5.0's intra preset, which
reached the best published rate-distortion in the fewest iterations: a long
phase with a cosine learning rate, soft-rounding whose temperature and Gaussian noise decrease
linearly, then a short phase on the true integers (``hardround``) where only the networks
adapt. Budgets are smaller than upstream's because this tool is meant to run on CPUs too.

The recipes' names, the defaults of an encode and the rule for λ are in
:mod:`coolchic.defaults`, which the command line reads without loading training code.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from coolchic.model.layout import MODULE_NAMES, ModuleName

if TYPE_CHECKING:
    from coolchic.model.quantizer import QuantizerKind

ALL_MODULES: tuple[ModuleName, ...] = MODULE_NAMES
#: Learning rate of the network weights relative to the latents' (the schedule's), unless a
#: recipe sets its own (:attr:`Recipe.network_lr_scale`).
NETWORK_LR_SCALE = 4.0
NETWORKS: tuple[ModuleName, ...] = ("arm", "upsampling", "synthesis")


@dataclass(frozen=True)
class Phase:
    """One training phase.

    The learning rate follows a cosine from ``lr_start`` to ``lr_end`` over ``iterations``;
    the soft-round temperature and the Gaussian noise σ move linearly between their bounds.
    With ``patience`` set, the phase stops after that many iterations without a new best
    validation loss. The best state seen is restored at the end of the phase.
    """

    name: str
    iterations: int
    lr_start: float
    lr_end: float
    quantizer: QuantizerKind = "softround"
    temperature: tuple[float, float] = (0.35, 0.08)
    noise_sigma: tuple[float, float] = (0.22, 0.15)
    modules: tuple[ModuleName, ...] = ALL_MODULES
    patience: int | None = None
    eval_every: int = 100

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ValueError(f"phase {self.name}: iterations must be >= 1, found {self.iterations}")
        if not (0 < self.lr_end <= self.lr_start):
            raise ValueError(
                f"phase {self.name}: expected 0 < lr_end <= lr_start, "
                f"found {self.lr_end}, {self.lr_start}"
            )
        if not self.modules or set(self.modules) - set(ALL_MODULES):
            raise ValueError(f"phase {self.name}: modules must be among {ALL_MODULES}")
        if self.eval_every < 1:
            raise ValueError(f"phase {self.name}: eval_every must be >= 1")


@dataclass(frozen=True)
class Warmup:
    """Stages of (candidates, iterations): all candidates train, the best ones go on."""

    stages: tuple[tuple[int, int], ...]
    lr: float = 1e-2
    temperature: float = 0.35
    noise_sigma: float = 0.22

    def __post_init__(self) -> None:
        previous = None
        for candidates, iterations in self.stages:
            if candidates < 1 or iterations < 1:
                raise ValueError(f"warm-up stage ({candidates}, {iterations}) must be positive")
            if previous is not None and candidates > previous:
                raise ValueError("warm-up stages cannot add candidates")
            previous = candidates

    @property
    def iterations(self) -> int:
        return sum(candidates * iterations for candidates, iterations in self.stages)

    @property
    def empty(self) -> bool:
        """No stage: the run starts from a trained model (see :func:`continuation`)."""
        return not self.stages


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    warmup: Warmup
    phases: tuple[Phase, ...] = field(default_factory=tuple)
    #: How many times faster than the latents the networks learn (SOAP against Adam; see
    #: :func:`coolchic.train.trainer.make_optimizer`).
    network_lr_scale: float = NETWORK_LR_SCALE
    #: Whether the networks' integers and the improbable latents get RDOQ after training (on
    #: frames small enough, :func:`coolchic.nnquant.search.takes_rdoq`). ``instant`` leaves it
    #: out: its few hundred evaluations cost about as much as its 90 training steps.
    rdoq: bool = True

    @property
    def iterations(self) -> int:
        """Every training iteration of the recipe, warm-up candidates included."""
        return self.warmup.iterations + sum(phase.iterations for phase in self.phases)


#: What each recipe is for (``coolchic recipes`` lists it beside the schedule).
_DESCRIPTIONS: dict[str, str] = {
    "instant": "a few seconds on a tiny image: a smoke test, not a real encode",
    "faster": "quick look",
    "fast": "the default: good compression for a small budget",
    "medium": "smaller files for about five times the time of fast",
    "slow": "close to the best this architecture does",
    "placebo": "diminishing returns",
}


def _recipe(
    name: str,
    *,
    warmup: tuple[tuple[int, int], ...],
    main: int,
    final: int,
    lr: float = 1e-2,
    eval_every: int = 100,
    patience: int | None = None,
    network_lr_scale: float = NETWORK_LR_SCALE,
    rdoq: bool = True,
) -> Recipe:
    return Recipe(
        name=name,
        description=_DESCRIPTIONS[name],
        warmup=Warmup(stages=warmup, lr=lr),
        network_lr_scale=network_lr_scale,
        rdoq=rdoq,
        phases=(
            Phase(
                name="main",
                iterations=main,
                lr_start=lr,
                lr_end=1e-5,
                quantizer="softround",
                eval_every=eval_every,
                patience=patience,
            ),
            Phase(
                name="integer",
                iterations=final,
                lr_start=1e-4,
                lr_end=1e-6,
                quantizer="hardround",
                modules=NETWORKS,
                eval_every=max(1, min(eval_every, final // 4 or 1)),
            ),
        ),
    )


RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        # instant skips RDOQ: on a 16x8 frame its ~600 evaluations took 2.7 s against 2.7 s
        # for the 90 training steps, and this recipe is a smoke test (BENCHMARKS.md).
        _recipe("instant", warmup=((2, 10),), main=60, final=10, eval_every=20, rdoq=False),
        _recipe("faster", warmup=((3, 50), (2, 50)), main=1200, final=100),
        # fast and medium spend little on the warm-up: at 192x128 more main-phase iterations
        # paid far more than more or longer warm-up candidates (BENCHMARKS.md, 2026-11-30).
        # fast's networks learn 2x faster than the latents, not 4x: at λ = 1e-3 and 4e-3 that
        # lowered the rate-distortion cost at five points of eight on four 416x240 photos
        # (1.3 % on average) and at all four λ on kodim15 192x128 (1.7 to 6.7 %), and changed
        # it by 0.1 % on a 768x512 crop (BENCHMARKS.md, 2026-12-05 01:45). The longer recipes
        # keep 4x: not measured against 2x. A main phase of 4,500 instead of 3,900 lowered J by
        # only 0.75 % on kodim15 (8 seeds) and 0.30 % on four 416x240 photos, and eight
        # 25-iteration warm-up candidates raised it by 2.1 % on three 192x128 photo crops
        # (BENCHMARKS.md, 2026-12-05 15:50): neither is worth it.
        _recipe("fast", warmup=((4, 50), (2, 100)), main=3900, final=300, network_lr_scale=2.0),
        # medium: the main phase still paid at 20,000 iterations on 192x128 (about 2 % lower
        # rate-distortion cost than 11,500 at λ = 1e-3, 1 % at 4e-4; BENCHMARKS.md).
        _recipe("medium", warmup=((5, 100), (2, 200)), main=20000, final=600),
        # Each recipe trains more than the one before it, in the warm-up, the main phase and
        # in all: slow's main phase is longer than medium's (20,000), not just its warm-up.
        _recipe("slow", warmup=((5, 400), (2, 400)), main=32000, final=1000, patience=3000),
        _recipe(
            "placebo",
            warmup=((8, 400), (4, 400), (2, 400)),
            main=40000,
            final=1500,
            patience=5000,
        ),
    )
}


def continuation(recipe: Recipe, fraction: float) -> Recipe:
    """The last ``fraction`` of ``recipe``'s main phase, then its later phases, no warm-up.

    What a rate-control trial trains (:mod:`coolchic.ratecontrol`): a model trained at one λ
    moves to a nearby λ by replaying the end of the main phase there, from the learning rate,
    temperature and noise that the main phase had at that point.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], found {fraction}")
    main, *later = recipe.phases
    start = 1 - fraction

    def at_start(bounds: tuple[float, float]) -> tuple[float, float]:
        return (bounds[0] + (bounds[1] - bounds[0]) * start, bounds[1])

    replay = Phase(
        name="retarget",
        iterations=max(1, round(main.iterations * fraction)),
        lr_start=main.lr_end + (main.lr_start - main.lr_end) * (1 + math.cos(math.pi * start)) / 2,
        lr_end=main.lr_end,
        quantizer=main.quantizer,
        temperature=at_start(main.temperature),
        noise_sigma=at_start(main.noise_sigma),
        modules=main.modules,
        eval_every=main.eval_every,
    )
    return Recipe(
        name=f"{recipe.name}-continued",
        description=f"the last {fraction:.0%} of {recipe.name}'s main phase, from a trained model",
        warmup=Warmup(stages=()),
        phases=(replay, *later),
        network_lr_scale=recipe.network_lr_scale,
    )


def scaled(recipe: Recipe, factor: float) -> Recipe:
    """``recipe`` with every warm-up stage and phase ``factor`` times as long.

    Spends more (or less) time than a recipe without changing its shape: the learning rate,
    temperature and noise schedules stretch with the phases, patience too; the number of
    warm-up candidates stays. ``factor`` 1 returns ``recipe`` itself.
    """
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"iterations scale must be a finite number > 0, found {factor}")
    if factor == 1:
        return recipe

    def longer(iterations: int) -> int:
        return max(1, round(iterations * factor))

    return dataclasses.replace(
        recipe,
        warmup=dataclasses.replace(
            recipe.warmup,
            stages=tuple((count, longer(length)) for count, length in recipe.warmup.stages),
        ),
        phases=tuple(
            dataclasses.replace(
                phase,
                iterations=longer(phase.iterations),
                patience=None if phase.patience is None else longer(phase.patience),
            )
            for phase in recipe.phases
        ),
    )


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``.

    Raises:
        ValueError: unknown name (lists the known ones).
    """
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown recipe {name!r}: expected one of {', '.join(RECIPES)}") from None
