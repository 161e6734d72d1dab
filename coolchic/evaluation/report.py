"""Rate-distortion curves from the reports that ``batch`` and ``watch`` wrote, an x265 anchor
for them, and a self-contained HTML page: what ``coolchic report`` prints and writes.

A report is a ``.json`` with ``input``, ``bpp``, ``lmbda`` and a PSNR (``psnr_yuv``, or
``psnr_rgb`` for PNG inputs). Reports of the same input (by its sha256) and recipe form one
curve, one point per λ. The anchor codes the input itself again (it must still be readable and
unchanged), and the BD-rate (:mod:`coolchic.evaluation.bdrate`) compares the curves on the same
metric.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from coolchic.errors import CoolchicError
from coolchic.evaluation.bdrate import BdRate, bd_rate
from coolchic.evaluation.x265 import DEFAULT_QPS, coded_planes, write_raw, x265_point
from coolchic.io import Frame, frame_metrics, read_frame

logger = logging.getLogger(__name__)

__all__ = ["Curve", "RatePoint", "anchor_curve", "html_page", "plot_curves", "read_curves"]


@dataclass(frozen=True)
class RatePoint:
    """One encode of an input: its λ, rate and quality, and where its stream is."""

    lmbda: float
    bpp: float
    psnr: float
    encode_seconds: float | None
    stream: Path | None


@dataclass
class Curve:
    """Every rate point of one input at one recipe, sorted by rate."""

    input_path: Path
    input_sha256: str | None
    recipe: str
    metric: str
    points: list[RatePoint] = field(default_factory=list)
    anchor: list[tuple[int, float, float]] = field(default_factory=list)  # qp, bpp, psnr
    anchor_note: str = ""
    bd: BdRate | None = None

    @property
    def label(self) -> str:
        return f"{self.input_path.name} ({self.recipe})"


def read_curves(folder: Path) -> tuple[list[Curve], list[str]]:
    """The curves of every report under ``folder``; also the files that could not be read.

    Hidden folders (checkpoints) are skipped; JSON files that are not encode reports (no
    ``bpp`` and ``lmbda``) are ignored silently.
    """
    curves: dict[tuple[str, str], Curve] = {}
    problems: list[str] = []
    for path in sorted(folder.rglob("*.json")):
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            problems.append(f"{path}: {error}")
            continue
        if not isinstance(report, dict) or not {"bpp", "lmbda", "input"} <= report.keys():
            continue
        metric = "psnr_rgb" if "psnr_rgb" in report else "psnr_yuv"
        if metric not in report:
            problems.append(f"{path}: no PSNR in the report")
            continue
        key = (str(report.get("input_sha256") or report["input"]), str(report.get("recipe")))
        curve = curves.setdefault(
            key,
            Curve(Path(report["input"]), report.get("input_sha256"), key[1], metric),
        )
        stream = Path(report["output"]) if report.get("output") else path.with_suffix(".cool")
        curve.points.append(
            RatePoint(
                lmbda=float(report["lmbda"]),
                bpp=float(report["bpp"]),
                psnr=float(report[metric]),
                encode_seconds=report.get("encode_seconds"),
                stream=stream if stream.is_file() else None,
            )
        )
    for curve in curves.values():
        curve.points.sort(key=lambda point: point.bpp)
    ordered = sorted(curves.values(), key=lambda c: (c.input_path.name, c.recipe))
    return ordered, problems


def _read_source(curve: Curve) -> Frame:
    """The input of ``curve``, refused if it changed since it was encoded."""
    import hashlib

    path = curve.input_path
    if not path.is_file():
        raise RuntimeError(f"{path}: input not found (needed to encode the anchor)")
    if curve.input_sha256 is not None:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != curve.input_sha256:
            raise RuntimeError(f"{path}: the input changed since it was encoded")
    return read_frame(path)


def anchor_curve(
    curve: Curve, qps: Sequence[int] = DEFAULT_QPS, *, threads: int = 1, min_points: int = 4
) -> None:
    """Code the curve's input with x265 at ``qps``; set ``curve.anchor`` and ``curve.bd``.

    A problem (input gone or changed, a tool failing) leaves the anchor empty with a note.
    """
    try:
        source = _read_source(curve)
        with tempfile.TemporaryDirectory(prefix="coolchic-anchor-") as folder:
            work = Path(folder)
            raw = work / "frame.raw"
            write_raw(raw, coded_planes(source), source.bit_depth)
            for qp in qps:
                point = x265_point(source, qp, work, raw_input=raw, threads=threads)
                metrics = frame_metrics(source, point.decoded).as_dict()
                bpp = point.bits / (source.width * source.height)
                curve.anchor.append((qp, bpp, float(metrics[curve.metric])))
    except (RuntimeError, OSError, ValueError) as error:
        curve.anchor.clear()
        curve.anchor_note = str(error)
        return
    curve.bd = bd_rate(
        [bpp for _, bpp, _ in curve.anchor],
        [psnr for _, _, psnr in curve.anchor],
        [point.bpp for point in curve.points],
        [point.psnr for point in curve.points],
        min_points=min_points,
    )


def as_dict(curve: Curve) -> dict[str, Any]:
    """The curve as JSON data (``coolchic report --json``)."""
    return {
        "input": str(curve.input_path),
        "recipe": curve.recipe,
        "metric": curve.metric,
        "points": [
            {
                "lmbda": p.lmbda,
                "bpp": p.bpp,
                "psnr": p.psnr,
                "encode_seconds": p.encode_seconds,
                "stream": None if p.stream is None else str(p.stream),
            }
            for p in curve.points
        ],
        "anchor": {
            "codec": "x265",
            "points": [{"qp": qp, "bpp": bpp, "psnr": psnr} for qp, bpp, psnr in curve.anchor],
            "note": curve.anchor_note or None,
        },
        "bd_rate": None
        if curve.bd is None
        else {
            "percent": curve.bd.percent,
            "reason": curve.bd.reason or None,
            "psnr_range": curve.bd.psnr_range,
        },
    }


# --------------------------------------------------------------------------------------------
# Pictures


def plot_curves(curves: Sequence[Curve]) -> bytes | None:
    """RD curves, one panel per input, as PNG bytes; None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    columns = min(2, max(1, len(curves)))
    rows = (len(curves) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(6.5 * columns, 4.5 * rows), squeeze=False)
    for axis, curve in zip(axes.flat, curves, strict=False):
        axis.plot(
            [p.bpp for p in curve.points], [p.psnr for p in curve.points], "o-", label="coolchic"
        )
        if curve.anchor:
            anchor = sorted(curve.anchor, key=lambda point: point[1])
            axis.plot([a[1] for a in anchor], [a[2] for a in anchor], "s--", label="x265")
        bd = "" if curve.bd is None else f" — BD-rate vs x265 {curve.bd.text()}"
        axis.set_title(curve.label + bd, fontsize=9)
        axis.set_xlabel("bits per pixel")
        axis.set_ylabel(f"{curve.metric} (dB)")
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8)
    for axis in list(axes.flat)[len(curves) :]:
        axis.set_visible(False)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


def thumbnail_png(frame: Frame, max_width: int = 320) -> bytes:
    """An 8-bit RGB thumbnail of ``frame`` (BT.709 limited range for YUV), as PNG bytes."""
    from PIL import Image

    planes = [np.asarray(p, dtype=np.float64) for p in frame.integer_planes()]
    scale = 255.0 / ((1 << frame.bit_depth) - 1)
    if frame.format == "rgb":
        rgb = np.stack(planes, axis=-1) * scale
    else:
        luma = planes[0]
        rows, cols = luma.shape
        chroma = [
            np.repeat(np.repeat(p, rows // p.shape[0], 0), cols // p.shape[1], 1)[:rows, :cols]
            for p in planes[1:]
        ]
        y = (luma * scale - 16.0) / 219.0
        cb, cr = ((c * scale - 128.0) / 224.0 for c in chroma)
        rgb = 255.0 * np.stack(
            (y + 1.5748 * cr, y - 0.1873 * cb - 0.4681 * cr, y + 1.8556 * cb), axis=-1
        )
    image = Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), "RGB")
    if image.width > max_width:
        height = max(1, round(image.height * max_width / image.width))
        image = image.resize((max_width, height), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _thumbnails(curve: Curve) -> list[tuple[str, str]]:
    """(caption, data URI) for the source and the decoded stream of each rate point."""
    from coolchic.decoder import decode

    try:
        source = _read_source(curve)
    except (RuntimeError, OSError, ValueError):
        return []
    pictures = [("source", _data_uri(thumbnail_png(source)))]
    for point in curve.points:
        if point.stream is None:
            continue
        try:
            decoded = decode(point.stream.read_bytes())
        except (CoolchicError, OSError) as error:  # a bad stream must not stop the page
            logger.warning("%s: cannot decode for the thumbnail: %s", point.stream, error)
            continue
        caption = f"λ {point.lmbda:g}: {point.bpp:.4f} bpp, {point.psnr:.2f} dB"
        pictures.append((caption, _data_uri(thumbnail_png(decoded))))
    return pictures


def html_page(curves: Sequence[Curve], plot: bytes | None) -> str:
    """One self-contained page: per input a table, the thumbnails; the RD plot at the top."""
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>coolchic rate-distortion report</title><style>",
        "body{font-family:sans-serif;margin:2em;max-width:1400px}img{max-width:100%}",
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;",
        "padding:.25em .6em;text-align:right}figure{display:inline-block;margin:.3em}",
        "figcaption{font-size:.8em;text-align:center}</style></head><body>",
        "<h1>coolchic rate-distortion report</h1>",
    ]
    if plot is None:
        parts.append("<p>No RD plot: matplotlib is not installed.</p>")
    else:
        parts.append(f"<img id='rd-plot' alt='RD curves' src='{_data_uri(plot)}'>")
    for curve in curves:
        parts.append(f"<h2>{html.escape(curve.label)}</h2><table>")
        parts.append("<tr><th>λ</th><th>bpp</th><th>PSNR dB</th><th>encode s</th></tr>")
        for p in curve.points:
            seconds = "" if p.encode_seconds is None else f"{p.encode_seconds:.1f}"
            parts.append(
                f"<tr><td>{p.lmbda:g}</td><td>{p.bpp:.4f}</td><td>{p.psnr:.2f}</td>"
                f"<td>{seconds}</td></tr>"
            )
        parts.append("</table>")
        if curve.bd is not None:
            span = (
                ""
                if curve.bd.psnr_range is None
                else " over {:.2f}–{:.2f} dB".format(*curve.bd.psnr_range)
            )
            parts.append(f"<p>BD-rate against x265: <b>{curve.bd.text()}</b>{span}</p>")
        elif curve.anchor_note:
            parts.append(f"<p>No anchor: {html.escape(curve.anchor_note)}</p>")
        for caption, uri in _thumbnails(curve):
            parts.append(
                f"<figure><img src='{uri}' alt='{html.escape(caption)}'>"
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts)
