"""Encode settings, their fingerprint, and the default number of torch threads per job.

The fingerprint names every option that changes the bytes of an encode, so that an output
made with the same options (and the same package and format version) is known to be up to date.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from coolchic import __version__
from coolchic.bitstream.constants import FORMAT_VERSION
from coolchic.defaults import DEFAULT_LMBDA, DEFAULT_RECIPE, check_lmbda, lmbda_tag
from coolchic.model.config import ModelConfig, parse_arm, parse_synthesis
from coolchic.ratecontrol import RateTarget
from coolchic.train.recipes import get_recipe, scaled

#: The settings that change the bytes of an encode (threads and device only change its speed).
FINGERPRINT_FIELDS = (
    "recipe",
    "lmbda",
    "start_lr",
    "layers_synthesis",
    "layers_arm",
    "n_ctx_rowcol",
    "latent_n_grids",
    "coarser_contexts",
    "ifce_features",
    "hyper_grids",
    "arm_stabiliser",
    "synthesis_stabiliser",
    "seed",
)


@dataclass(frozen=True)
class EncodeSettings:
    """User-level encode options; ``None`` architecture fields keep the automatic choice.

    With a ``target`` (a PSNR or a rate), λ is searched for (:mod:`coolchic.ratecontrol`) and
    ``lmbda`` is not used.
    """

    recipe: str = DEFAULT_RECIPE
    lmbda: float = DEFAULT_LMBDA
    start_lr: float | None = None
    layers_synthesis: str | None = None
    layers_arm: str | None = None
    n_ctx_rowcol: int | None = None
    latent_n_grids: int | None = None
    coarser_contexts: int | None = None
    ifce_features: int | None = None
    hyper_grids: int | None = None
    arm_stabiliser: bool | None = None
    synthesis_stabiliser: bool | None = None
    seed: int = 0
    #: Every phase of the recipe this many times as long (:func:`coolchic.train.recipes.scaled`).
    iterations_scale: float = 1.0
    device: str = "auto"
    threads: int | None = None
    #: Memory the jobs of this process may use together (``--memory-limit``); None: the
    #: machine's (see :mod:`coolchic.resources`). Changes when a job runs, never its bytes.
    memory_limit: int | None = None
    target: RateTarget | None = None

    def __post_init__(self) -> None:
        scaled(get_recipe(self.recipe), self.iterations_scale)
        check_lmbda(self.lmbda)
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be at least 1, found {self.threads}")
        self.model_config(None)  # validates the architecture options early

    def model_config(self, base: ModelConfig | None) -> ModelConfig | None:
        """The architecture: ``base`` (or the default) with the options given here."""
        overrides: dict[str, Any] = {}
        if self.layers_synthesis is not None:
            overrides["synthesis"] = parse_synthesis(self.layers_synthesis)
        if self.layers_arm is not None:
            overrides["arm_hidden"] = parse_arm(self.layers_arm)
        if self.n_ctx_rowcol is not None:
            overrides["n_ctx_rowcol"] = self.n_ctx_rowcol
        if self.latent_n_grids is not None:
            overrides["n_grids"] = self.latent_n_grids
        if self.coarser_contexts is not None:
            overrides["coarser_contexts"] = self.coarser_contexts
        if self.ifce_features is not None:
            overrides["ifce_features"] = self.ifce_features
        if self.hyper_grids is not None:
            overrides["hyper_grids"] = self.hyper_grids
        if self.arm_stabiliser is not None:
            overrides["arm_stabiliser"] = self.arm_stabiliser
        if self.synthesis_stabiliser is not None:
            overrides["synthesis_stabiliser"] = self.synthesis_stabiliser
        if not overrides:
            return base
        base = base or ModelConfig()
        return dataclasses.replace(base, **_implied_overrides(base, overrides), **overrides)

    @property
    def first_lmbda(self) -> float:
        """The λ of the encode, or of its first trial with a target (which picks the
        architecture)."""
        return self.target.first_lmbda() if self.target else self.lmbda

    def point_tag(self) -> str:
        """Names this rate point among several of one input: ``l1e-3``, ``p36``, ``b0.25``."""
        return self.target.tag if self.target else f"l{lmbda_tag(self.lmbda)}"

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """A short hash of every option that changes the output, and of the package version.

        The bitstream format version is hashed too: a stream of another format is not up to
        date, since this decoder cannot read it.
        """
        payload = {name: getattr(self, name) for name in FINGERPRINT_FIELDS}
        if self.target is not None:  # only then: the fingerprints of λ encodes stay as they were
            payload["lmbda"] = None
            payload["target"] = self.target.tag
        if self.iterations_scale != 1:  # only then, as for the target
            payload["iterations_scale"] = self.iterations_scale
        payload["version"] = __version__
        payload["format_version"] = FORMAT_VERSION
        text = json.dumps(payload, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def rate_points(points: list[EncodeSettings]) -> list[tuple[str | None, EncodeSettings]]:
    """(tag, settings) of each rate point of an input: the tag names its outputs
    (:meth:`EncodeSettings.point_tag`), None when the input has a single point."""
    if len(points) == 1:
        return [(None, points[0])]
    return [(settings.point_tag(), settings) for settings in points]


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask: taskset, cgroup cpusets), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def default_threads(jobs: int) -> int:
    """torch threads per job when ``jobs`` run at once: the usable CPUs shared out, at least 1."""
    return max(1, usable_cpus() // max(1, jobs))


def _implied_overrides(base: ModelConfig, overrides: dict[str, Any]) -> dict[str, Any]:
    """What the options given imply for the default's context options they do not name.

    The default architecture may carry the inter-feature context and hyper-latents; asking for
    coarser contexts instead, for no inter-feature context, or for fewer grids than the
    hyper-latents need turns those off or down, rather than failing on a combination the user
    never asked for.
    """
    implied: dict[str, Any] = {}
    if overrides.get("coarser_contexts") and "ifce_features" not in overrides:
        implied["ifce_features"] = 0
    ifce = overrides.get("ifce_features", implied.get("ifce_features", base.ifce_features))
    if "hyper_grids" not in overrides:
        n_grids = overrides.get("n_grids", base.n_grids)
        hyper = min(base.hyper_grids, n_grids - 1) if ifce else 0
        if hyper != base.hyper_grids:
            implied["hyper_grids"] = hyper
    return implied
