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

from coolchic.defaults import DEFAULT_LMBDA, DEFAULT_RECIPE, RECIPE_NAMES
from coolchic.executors import DEFAULT_RESOURCE_TIMEOUT_S, DISTRIBUTED_INSTALL_HINT

if TYPE_CHECKING:
    from coolchic.cli.app import AppContext
    from coolchic.executors import Executor
    from coolchic.jobs.settings import EncodeSettings

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

    @property
    def where(self) -> str:
        """Where the encodes run, for the log line that starts a run."""
        return f"on the Dask scheduler {self.scheduler}" if self.scheduler else "on this machine"

    @property
    def lmbda(self) -> float:
        """The first λ (the only one, unless several were given)."""
        return self.lmbdas[0]

    def point_settings(self, app: AppContext) -> list[EncodeSettings]:
        """One :meth:`settings` per λ, in the order given."""
        return [dataclasses.replace(self.settings(app), lmbda=lmbda) for lmbda in self.lmbdas]

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
    """``--recipe``, ``--lmbda``, ``--seed``, ``--recursive``, ``--include-png``, ``--jobs``,
    and where the encodes run: ``--scheduler``, ``--gpus-per-job``, ``--resource-timeout``.

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
