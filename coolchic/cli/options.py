"""Click options that several commands share, and what they build.

``batch`` and ``watch`` take the same encode options; :func:`encode_options` declares them once
and hands them to the command as one :class:`EncodeOptions` argument, so that neither command
lists them again. ``encode`` shares ``--recipe`` and ``--lmbda``, ``status`` and ``watch`` share
``--state-dir``: one declaration each, with the help text that fits the command.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from click.core import ParameterSource

from coolchic.defaults import DEFAULT_LMBDA, DEFAULT_RECIPE, RECIPE_NAMES
from coolchic.executors import DEFAULT_RESOURCE_TIMEOUT_S, DISTRIBUTED_INSTALL_HINT

if TYPE_CHECKING:
    from coolchic.cli.app import AppContext
    from coolchic.executors import Executor
    from coolchic.jobs.settings import EncodeSettings
    from coolchic.ratecontrol import RateTarget

F = TypeVar("F", bound=Callable[..., Any])


#: Name of the default output folder, inside the (first) input folder or the inbox.
DEFAULT_OUTPUT_NAME = "coolchic-out"

recipe_option = click.option(
    "--recipe", type=click.Choice(RECIPE_NAMES), default=DEFAULT_RECIPE, show_default=True
)


def lmbda_option(help: str) -> Callable[[F], F]:
    """``--lmbda``: λ > 0, default ``DEFAULT_LMBDA``; ``help`` says what range the command
    suggests."""
    return click.option(
        "--lmbda",
        type=click.FloatRange(min=0, min_open=True),
        default=DEFAULT_LMBDA,
        show_default=True,
        help=help,
    )


def _parse_lmbdas(
    _ctx: click.Context, _param: click.Parameter, value: str | float
) -> tuple[float, ...]:
    from coolchic.defaults import parse_lmbdas

    try:
        return parse_lmbdas(str(value))
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


#: ``--lmbda`` of ``batch`` and ``watch``: one λ, or several (one encode of each input per λ;
#: ``watch`` runs a file's points one after the other).
lmbdas_option = click.option(
    "--lmbda",
    "lmbdas",
    default=str(DEFAULT_LMBDA),
    show_default=True,
    callback=_parse_lmbdas,
    metavar="λ[,λ...]",
    help="Rate-distortion trade-off λ: larger means smaller files. Several λ separated by "
    "commas encode each input once per λ, as <stem>.l<λ>.cool and .json (e.g. "
    "--lmbda 4e-4,1e-3,4e-3,1e-2).",
)


def target_options(several: bool) -> Callable[[F], F]:
    """``--target-psnr`` and ``--target-bpp``: rate control instead of ``--lmbda`` (one value,
    or with ``several`` a comma-separated list: one rate point each). The command receives
    them as ``target_psnr`` and ``target_bpp`` (text) and reads them with :func:`rate_targets`."""
    what = "values separated by commas: one encode each, as <stem>.p<DB>.cool" if several else ""
    metavar = "DB[,DB...]" if several else "DB"
    psnr = click.option(
        "--target-psnr",
        metavar=metavar,
        help="Search λ for this PSNR (the 4:2:0 YUV PSNR, or RGB for .png) instead of giving "
        f"--lmbda; costs up to twice a plain encode. {what}".strip(),
    )
    bpp = click.option(
        "--target-bpp",
        metavar=metavar.replace("DB", "BPP"),
        help="Search λ for this rate in bits per pixel, the whole stream included. "
        + (what.replace("p<DB>", "b<BPP>") if several else ""),
    )

    def decorate(function: F) -> F:
        return psnr(bpp(function))

    return decorate


def rate_targets(
    target_psnr: str | None, target_bpp: str | None, *, lmbda_param: str, several: bool
) -> tuple[RateTarget, ...]:
    """The targets of ``--target-psnr``/``--target-bpp`` (none: encode at ``--lmbda``).

    Raises:
        click.UsageError: both given, given with ``--lmbda``, or not valid values.
    """
    from coolchic.ratecontrol import parse_targets

    if target_psnr is not None and target_bpp is not None:
        raise click.UsageError("give --target-psnr or --target-bpp, not both")
    given = target_psnr if target_psnr is not None else target_bpp
    if given is None:
        return ()
    context = click.get_current_context()
    if context.get_parameter_source(lmbda_param) not in (None, ParameterSource.DEFAULT):
        raise click.UsageError("--lmbda cannot be given with a target: the target chooses λ")
    metric = "psnr" if target_psnr is not None else "bpp"
    try:
        targets = parse_targets(metric, given)
    except ValueError as error:
        raise click.UsageError(f"--target-{metric}: {error}") from None
    if len(targets) > 1 and not several:
        raise click.UsageError(f"--target-{metric} takes one value here")
    return targets


def state_dir_option(help: str) -> Callable[[F], F]:
    """``--state-dir``: the daemon's journal and lock folder (written by ``watch``, read by
    ``status``)."""
    return click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), help=help)


@dataclass(frozen=True)
class EncodeOptions:
    """The options of :func:`encode_options`, as the command received them."""

    recipe: str
    lmbdas: tuple[float, ...]
    seed: int
    recursive: bool
    include_png: bool
    jobs: int | None
    scheduler: str | None
    gpus_per_job: float
    resource_timeout_s: float
    target_psnr: str | None
    target_bpp: str | None

    def targets(self) -> tuple[RateTarget, ...]:
        """The targets of ``--target-psnr``/``--target-bpp`` (none: encode at ``--lmbda``)."""
        return rate_targets(self.target_psnr, self.target_bpp, lmbda_param="lmbdas", several=True)

    @property
    def aim(self) -> str:
        """What the points aim at, for log lines and titles: ``lmbda 1e-3,4e-3``,
        ``target-psnr 34,36``."""
        if self.target_psnr is not None or self.target_bpp is not None:
            metric = "psnr" if self.target_psnr is not None else "bpp"
            return f"target-{metric} " + ",".join(f"{t.value:g}" for t in self.targets())
        return "lmbda " + ",".join(f"{lmbda:g}" for lmbda in self.lmbdas)

    @property
    def where(self) -> str:
        """Where the encodes run, for the log line that starts a run."""
        return f"on the Dask scheduler {self.scheduler}" if self.scheduler else "on this machine"

    @property
    def lmbda(self) -> float:
        """The first λ (the only one, unless several were given)."""
        return self.lmbdas[0]

    def point_settings(self, app: AppContext) -> list[EncodeSettings]:
        """One :meth:`settings` per target, else per λ, in the order given."""
        settings = self.settings(app)
        if targets := self.targets():
            return [dataclasses.replace(settings, target=target) for target in targets]
        return [dataclasses.replace(settings, lmbda=lmbda) for lmbda in self.lmbdas]

    def settings(self, app: AppContext) -> EncodeSettings:
        """The encode settings (of the first λ), with torch threads per job set explicitly:
        ``--threads``, else this machine's cores / jobs (also for ``--scheduler local``, whose
        workers are here); on a remote Dask cluster each worker shares out its own cores among
        its task threads."""
        from coolchic.jobs.settings import EncodeSettings, default_threads

        remote = self.scheduler is not None and self.scheduler != "local"
        local_threads = None if remote else default_threads(self.jobs or 1)
        return EncodeSettings(
            recipe=self.recipe,
            lmbda=self.lmbda,
            seed=self.seed,
            device=app.device,
            threads=app.threads or local_threads,
            memory_limit=app.memory_limit,
        )

    def executor(self) -> Executor:
        """The executor of ``--scheduler``; a missing extra or an unreachable scheduler is a
        one-line error (exit 1)."""
        from coolchic.executors import create_executor

        return create_executor(
            self.scheduler,
            jobs=self.jobs,
            gpus_per_job=self.gpus_per_job,
            resource_timeout_s=self.resource_timeout_s,
        )


def encode_options(function: F) -> F:
    """``--recipe``, ``--lmbda`` (or ``--target-psnr``/``--target-bpp``), ``--seed``,
    ``--recursive``, ``--include-png``, ``--jobs``, and where the encodes run:
    ``--scheduler``, ``--gpus-per-job``, ``--resource-timeout``.

    The command receives them as one keyword argument, ``options`` (an :class:`EncodeOptions`).
    """
    names = [field.name for field in dataclasses.fields(EncodeOptions)]

    @functools.wraps(function)
    def command(*args: Any, **kwargs: Any) -> Any:
        options = EncodeOptions(**{name: kwargs.pop(name) for name in names})
        return function(*args, options=options, **kwargs)

    decorators = [
        recipe_option,
        lmbdas_option,
        target_options(several=True),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("-r", "--recursive", is_flag=True, help="Also take inputs in sub-folders."),
        click.option("--include-png", is_flag=True, help="Take .png images as well as .yuv files."),
        click.option(
            "-j",
            "--jobs",
            type=click.IntRange(min=1),
            help="Encodes run at once, each in its own process (threads: cores / jobs). "
            "Default: 1; with --scheduler, as many as the cluster has worker threads "
            "(--scheduler local: the number of local workers, default 1).",
        ),
        click.option(
            "--scheduler",
            metavar="ADDRESS",
            help="Run the encodes on a Dask distributed cluster: tcp://HOST:8786, or 'local' "
            "for a cluster of --jobs worker processes on this machine. Needs "
            f"{DISTRIBUTED_INSTALL_HINT}.",
        ),
        click.option(
            "--gpus-per-job",
            type=click.FloatRange(min=0),
            default=0,
            help="With --scheduler: the GPU resource each encode needs (workers declare it "
            "with 'dask worker ... --resources GPU=1').",
        ),
        click.option(
            "--resource-timeout",
            "resource_timeout_s",
            type=click.FloatRange(min=0),
            default=DEFAULT_RESOURCE_TIMEOUT_S,
            show_default=True,
            metavar="SECONDS",
            help="With --scheduler: an encode that no worker can take (none with the "
            "resources asked for) fails after this long instead of waiting forever.",
        ),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command  # type: ignore[return-value]
