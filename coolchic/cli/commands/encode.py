"""``coolchic encode INPUT -o OUT.cool``: overfit a decoder to one frame and write its stream."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from coolchic.cli.app import AppContext, cli
from coolchic.cli.options import lmbda_option, rate_targets, recipe_option, target_options

if TYPE_CHECKING:
    from coolchic.jobs.settings import EncodeSettings

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def _file_option(*decls: str, help: str) -> Callable[[F], F]:
    """An option that names one file (never a folder), received as a :class:`Path`."""
    return click.option(*decls, type=click.Path(dir_okay=False, path_type=Path), help=help)


def _output_for(input_path: Path) -> Path:
    return input_path.with_suffix(".cool")


@cli.command()
@click.argument("input_path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@_file_option(
    "--input",
    "-i",
    "input_option",
    help="Input file (alternative to the argument; research-script spelling).",
)
@_file_option("-o", "--output", help="Bitstream to write (default: INPUT with a .cool suffix).")
@recipe_option
@lmbda_option("Rate-distortion trade-off λ: larger means smaller files (1e-4 … 2e-2).")
@click.option(
    "--iterations-scale",
    "iterations_scale",
    type=click.FloatRange(0.1, 10),
    default=1.0,
    show_default=True,
    help="Make every phase of the recipe this many times as long: a budget between two "
    "recipes (2 spends about twice the time of the recipe, for smaller files).",
)
@target_options(several=False)
@click.option("--start-lr", "--start_lr", "start_lr", type=click.FloatRange(min=0, min_open=True))
@click.option(
    "--layers-synthesis",
    "--layers_synthesis",
    "layers_synthesis",
    help="Synthesis layers, e.g. 40-1-linear-relu,3-1-linear-relu,3-3-residual-relu,"
    "3-3-residual-none.",
)
@click.option("--layers-arm", "--layers_arm", "layers_arm", help="ARM hidden widths, e.g. 24,24.")
@click.option("--n-ctx-rowcol", "--n_ctx_rowcol", "n_ctx_rowcol", type=click.IntRange(1, 4))
@click.option("--latent-n-grids", "--latent_n_grids", "latent_n_grids", type=click.IntRange(1, 10))
@click.option(
    "--coarser-contexts",
    "coarser_contexts",
    type=click.IntRange(0, 3),
    help="How many coarser latent grids add their co-located value to the ARM context.",
)
@click.option(
    "--ifce-features",
    "ifce_features",
    type=click.IntRange(0, 8),
    help="Cool-chic 5's inter-feature context: this many values, a learned map of the "
    "coarser grids, end the ARM context of the three finest grids (excludes "
    "--coarser-contexts).",
)
@click.option(
    "--hyper-grids",
    "hyper_grids",
    type=click.IntRange(0, 4),
    help="Cool-chic 5's hyper-latents: this many grids at the coarsest resolutions, read only "
    "by the inter-feature context (needs --ifce-features).",
)
@click.option(
    "--arm-stabiliser/--no-arm-stabiliser",
    "arm_stabiliser",
    default=None,
    help="Add a linear map of the ARM's context to its output (Cool-chic 5's stabiliser; "
    "default: chosen for the image).",
)
@click.option(
    "--synthesis-stabiliser/--no-synthesis-stabiliser",
    "synthesis_stabiliser",
    default=None,
    help="Add a 1x1 linear map of the upsampled latents to the synthesis output "
    "(Cool-chic 5's stabiliser; default: chosen for the image).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@_file_option("--report", "--enc_results_path", "report_path", help="Write the JSON report here.")
@_file_option(
    "--decoded",
    "decoded_path",
    help="Write the decoder's reconstruction exactly at this path (.yuv or .png).",
)
@click.option(
    "--model_save_path",
    "model_save_path",
    hidden=True,
    type=click.Path(path_type=Path),
    help="Accepted for compatibility; the bitstream is the model.",
)
@_file_option(
    "--checkpoint",
    "checkpoint_path",
    help="Save the training state here as it goes (every 30 s and at each phase) and resume "
    "from it when it exists for the same input and options; deleted once the stream is written.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.pass_obj
def encode(
    app: AppContext,
    input_path: Path | None,
    input_option: Path | None,
    output: Path | None,
    report_path: Path | None,
    decoded_path: Path | None,
    model_save_path: Path | None,
    checkpoint_path: Path | None,
    as_json: bool,
    target_psnr: str | None,
    target_bpp: str | None,
    **settings_options: Any,
) -> None:
    """Encode the first frame of INPUT (.yuv 4:2:0/4:4:4 8/10-bit, or .png) into a bitstream."""
    # settings_options: the options named after EncodeSettings fields (--recipe, --lmbda,
    # --start-lr, the architecture, --seed), passed on to it by name.
    source = _source(input_path, input_option)
    targets = rate_targets(target_psnr, target_bpp, lmbda_param="lmbda", several=False)
    if model_save_path is not None:
        logger.warning("--model_save_path is ignored: the bitstream holds the whole model")
    output = output or _output_for(source)

    from coolchic.jobs.run import encode_file

    settings = _settings(app, target=targets[0] if targets else None, **settings_options)
    from coolchic.cli.progress import ProgressDisplay

    with ProgressDisplay(source.name, quiet=app.verbosity < 0) as display:
        report = encode_file(
            source,
            output,
            settings,
            progress=display,
            report_path=report_path,
            decoded_path=decoded_path,
            checkpoint_path=checkpoint_path,
        )
    if as_json:
        click.echo(json.dumps(report))
    else:
        _echo_summary(output, report)


def _source(input_path: Path | None, input_option: Path | None) -> Path:
    """The input, given as the argument or as ``--input`` (the research scripts' spelling)."""
    if input_path is not None and input_option is not None and input_path != input_option:
        raise click.UsageError("give the input once, as an argument or with --input")
    source = input_path or input_option
    if source is None:
        raise click.UsageError("missing INPUT (a .yuv or .png file)")
    return source


def _settings(app: AppContext, **fields: Any) -> EncodeSettings:
    """The encode settings of the options, with the group's device, threads and memory limit;
    an invalid combination is a usage error (exit 2), not a crash."""
    from coolchic.jobs.settings import EncodeSettings

    try:
        return EncodeSettings(
            **fields, device=app.device, threads=app.threads, memory_limit=app.memory_limit
        )
    except ValueError as error:
        raise click.UsageError(str(error)) from None


def _echo_summary(output: Path, report: dict[str, Any]) -> None:
    """One line on stdout: size, rate, quality, complexity and time of the encode (and how a
    target was met)."""
    psnr_key = "psnr_rgb" if report["format"] == "rgb" else "psnr_yuv"
    line = (
        f"{output}: {report['bits']} bits, {report['bpp']:.4f} bpp, "
        f"{psnr_key} {report[psnr_key]:.3f} dB, {report['mac_per_pixel']:.0f} MAC/pixel, "
        f"encoded in {report['encode_seconds']:.1f} s"
    )
    target = report.get("target")
    if target is not None:
        unit = "dB" if target["metric"] == "psnr" else "bpp"
        outcome = "met" if target["met"] else "NOT met"
        line += (
            f"; target {target['value']:g} {unit} {outcome} at λ {report['lmbda']:.4g} "
            f"after {len(report['trials'])} trials"
        )
    click.echo(line)
