"""Which files are inputs, and where their outputs go.

The safety rules that ``coolchic batch`` and the watch-folder daemon share: regular files only,
no symbolic link out of the folder, no output outside the output folder, output names that fit
the file system, and the clean-up of temporaries that an interrupted atomic write left behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePath

from coolchic.errors import InputError
from coolchic.io.files import output_folder_lock

#: One logger name for the whole package, as before it was split (users filter logs by it).
logger = logging.getLogger("coolchic.jobs")


#: Suffixes of files still being written by common tools (rsync, browsers, our own writers).
PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".download", ".filepart")
#: NAS, sync-tool and desktop litter that is never an input.
IGNORED_NAMES = frozenset(
    {"@eaDir", "#recycle", "$RECYCLE.BIN", "Thumbs.db", "desktop.ini", "__MACOSX"}
)


def is_ignored_name(name: str) -> bool:
    """Hidden files, editor backups, partial downloads and NAS litter are never inputs."""
    return (
        name.startswith((".", "~"))
        or name.endswith("~")
        or name in IGNORED_NAMES
        or name.lower().endswith(PARTIAL_SUFFIXES)
    )


def is_input_name(name: str, *, include_png: bool) -> bool:
    """Whether a file name is an input: ``*.yuv`` (any case), and ``*.png`` when asked."""
    if is_ignored_name(name):
        return False
    suffix = PurePath(name).suffix.lower()
    return suffix == ".yuv" or (include_png and suffix == ".png")


@dataclass(frozen=True)
class InputFile:
    """An input found under ``root``; ``refused`` says why it must not be read, if so."""

    path: Path
    root: Path
    relative: PurePath
    refused: str | None = None


def refusal_reason(path: Path, root: Path) -> str | None:
    """Why ``path`` (found under ``root``) must not be read, or ``None`` if it may be.

    Only regular files qualify; a symbolic link is followed only when its target lies under
    ``root`` too, so a link cannot make the tool read (and then move or delete) a file elsewhere.
    """
    try:
        target = path.resolve(strict=True)
        mode = target.stat().st_mode
    except (OSError, RuntimeError) as error:
        return f"cannot resolve the path ({getattr(error, 'strerror', None) or error})"
    if not stat.S_ISREG(mode):
        return "not a regular file"
    if path.is_symlink() and not target.is_relative_to(root.resolve()):
        return f"symbolic link to {target}, outside {root}"
    return None


def find_inputs(
    root: str | Path,
    *,
    recursive: bool = False,
    include_png: bool = False,
    exclude: Iterable[str | Path] = (),
) -> list[InputFile]:
    """The input files in folder ``root``, sorted by relative path.

    Hidden and partial files are skipped, and so are, when recursing, hidden folders, folders
    reached through a symbolic link and the ``exclude`` folders (the output folder, ``done/``).
    A link to a file outside ``root`` is listed with a ``refused`` reason rather than dropped,
    so that the caller can report it.
    """
    root = Path(root)
    resolved_root = root.resolve()
    excluded = {Path(p).resolve() for p in exclude}
    found: list[InputFile] = []
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError as error:
            logger.warning("cannot list %s: %s", folder, error.strerror or error)
            continue
        for entry in entries:
            path = Path(entry.path)
            named_like_input = is_input_name(entry.name, include_png=include_png)
            if entry.is_dir(follow_symlinks=False):
                descend = recursive and not is_ignored_name(entry.name)
                if descend and path.resolve() not in excluded:
                    pending.append(path)
                elif named_like_input and not recursive and path.resolve() not in excluded:
                    relative = path.relative_to(root)
                    found.append(InputFile(path, resolved_root, relative, "a folder, not a file"))
                continue
            if not named_like_input:
                continue
            relative = path.relative_to(root)
            if not entry.is_symlink() and not entry.is_file(follow_symlinks=False):
                # FIFOs, sockets and devices are listed, never opened (a FIFO would block)
                found.append(InputFile(path, resolved_root, relative, "not a regular file"))
                continue
            found.append(InputFile(path, resolved_root, relative, refusal_reason(path, root)))
    return sorted(found, key=lambda item: item.relative.as_posix())


#: Longest file name most file systems take (ext4, XFS, APFS, NTFS in UTF-16 units).
NAME_MAX_BYTES = 255
#: ``.<stem>.cool.XXXXXXXX.tmp``, the temporary name of an output, must fit in NAME_MAX_BYTES.
MAX_OUTPUT_STEM_BYTES = NAME_MAX_BYTES - len("..cool.XXXXXXXX.tmp")


def output_paths(
    relative: PurePath, output_root: str | Path, point: str | None = None
) -> tuple[Path, Path]:
    """``<output_root>/<relative folder>/<stem>.cool`` and ``.json`` for an input; with a rate
    ``point`` tag (several rate points per input), ``<stem>.<point>.cool`` and ``.json``, e.g.
    ``pic.l1e-3.cool`` or ``pic.p36.cool``.

    Raises:
        InputError: the name would put an output outside ``output_root`` (``..``, an absolute
            path, or a folder in the output tree that links elsewhere).
    """
    relative = PurePath(relative)
    stem = relative.stem
    named = stem if point is None else f"{stem}.{point}"
    if relative.is_absolute() or ".." in relative.parts or not stem or stem.startswith("."):
        raise InputError(f"{relative}: cannot name an output after this input")
    stem_bytes = len(os.fsencode(named))
    if stem_bytes > MAX_OUTPUT_STEM_BYTES:
        raise InputError(
            f"{relative.name}: the name is too long to name its outputs after it ({stem_bytes} "
            f"bytes before the extension, at most {MAX_OUTPUT_STEM_BYTES}); rename the file"
        )
    output_root = Path(output_root)
    folder = output_root.joinpath(*relative.parts[:-1])
    cool = folder / f"{named}.cool"
    report = folder / f"{named}.json"
    resolved_root = output_root.resolve()
    for path in (cool, report):
        if not path.resolve().is_relative_to(resolved_root):
            raise InputError(f"{relative}: its output {path} would lie outside {output_root}")
    return cool, report


#: The hidden folder of ``batch``'s checkpoints, in its output folder.
CHECKPOINT_DIR_NAME = ".coolchic-checkpoints"


def checkpoint_path(output_root: str | Path, relative: PurePath, point: str | None = None) -> Path:
    """Where ``batch`` checkpoints the encode of an input (of one rate ``point`` of it): hidden,
    beside its outputs.

    Named after the input's relative path, so that a re-run of the same batch finds it; the
    checkpoint's own key decides whether it may be resumed.
    """
    key = PurePath(relative).as_posix() + ("" if point is None else f"\0{point}")
    name = hashlib.sha256(os.fsencode(key)).hexdigest()[:24]
    return Path(output_root) / CHECKPOINT_DIR_NAME / f"{name}.pt"


def remove_stale_temporaries(folder: Path, *, recursive: bool = True) -> list[Path]:
    """Delete the temporary files that an interrupted atomic write left in ``folder``.

    Only names of the form ``.<stem>.cool.<random>.tmp`` / ``.<stem>.json.<random>.tmp``
    (what :func:`~coolchic.io.files.atomic_write_bytes` creates for our outputs) are touched.
    """
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    pattern_files = folder.rglob(".*.tmp") if recursive else folder.glob(".*.tmp")
    for path in pattern_files:
        parts = path.name.split(".")
        # "", stem..., "cool"|"json", random, "tmp"
        if len(parts) >= 5 and parts[-3] in ("cool", "json") and path.is_file():
            with output_folder_lock(path.parent), contextlib.suppress(FileNotFoundError):
                path.unlink()  # under the lock: not a write of another process in progress
                removed.append(path)
    return removed
