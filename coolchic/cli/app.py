"""The ``coolchic`` click group: global options, error-to-exit-code mapping, entry point."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import click

from coolchic import __version__
from coolchic.cli import exit_codes
from coolchic.errors import CoolchicError


@dataclass(frozen=True)
class AppContext:
    """Group options, shared with every command through ``ctx.obj``."""

    verbosity: int
    log_format: str
    log_file: str | None
    device: str
    threads: int | None
    memory_limit: int | None = None


class CoolchicGroup(click.Group):
    """Turns known errors into one stderr line and an exit code; tracebacks only with ``-v``."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            raise click.exceptions.Exit(exit_codes.INTERRUPTED) from None
        except CoolchicError as error:
            _report(ctx, f"error: {error}")
        except OSError as error:
            where = f"{error.filename}: " if error.filename else ""
            _report(ctx, f"error: {where}{error.strerror or error}")
        except Exception as error:
            _report(ctx, f"internal error: {type(error).__name__}: {error}", internal=True)
        raise click.exceptions.Exit(exit_codes.ERROR)


def _report(ctx: click.Context, line: str, *, internal: bool = False) -> None:
    app = ctx.find_object(AppContext)
    verbose = app is not None and app.verbosity >= 1
    if verbose:
        traceback.print_exc(file=sys.stderr)
    elif internal:
        line += " (run with -v for the traceback)"
    click.echo(line, err=True)


def _check_device(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    from coolchic.device import check_device_spec

    try:
        return check_device_spec(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _check_memory(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    from coolchic.decode_memory import parse_bytes

    if value is None:
        return None
    try:
        return parse_bytes(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


@click.group(cls=CoolchicGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="coolchic")
@click.option("-v", "--verbose", count=True, help="More output (repeatable); shows tracebacks.")
@click.option("-q", "--quiet", count=True, help="Less output (repeatable).")
@click.option(
    "--log-file",
    type=click.Path(dir_okay=False),
    help="Append a verbose (DEBUG) log to this file, whatever -q says.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one object per line on stderr (for daemons and log collectors).",
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    callback=_check_device,
    help="auto|cpu|cuda|cuda:N|mps; auto picks CUDA, then MPS, then the CPU.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="CPU threads for torch (default: all cores).",
)
@click.option(
    "--memory-limit",
    callback=_check_memory,
    metavar="SIZE",
    help="Memory the encodes may use together, e.g. 12G (default: the machine's or the "
    "cgroup's, less 1 GiB). A frame that needs more is refused before any work; batch and "
    "watch start an encode only when it fits beside the running ones.",
)
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: int, **options: Any) -> None:
    """coolchic: a low-complexity overfitted neural image codec.

    Encodes the first frame of <name>_<W>x<H>_<fps>p_yuv420_<8|10>b.yuv files (and PNG
    images) into compact bitstreams.
    """
    # options: the group options named after AppContext's fields (--log-file, --log-format,
    # --device, --threads, --memory-limit), passed on to it by name.
    from coolchic.cli.logging_setup import setup_logging

    verbosity = verbose - quiet
    setup_logging(
        verbosity=verbosity, log_format=options["log_format"], log_file=options["log_file"]
    )
    ctx.obj = AppContext(verbosity=verbosity, **options)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (callable from tests)."""
    try:
        result = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="coolchic",
            standalone_mode=False,
        )
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        return exit_codes.INTERRUPTED
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except click.exceptions.Exit as exit_:
        return exit_.exit_code
    return result if isinstance(result, int) else exit_codes.OK
