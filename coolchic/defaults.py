"""What an encode uses when it is told nothing, the recipes' names, and the rule for λ.

One home for the values that the command line, the API (:mod:`coolchic.codec`), the batch and
daemon settings (:mod:`coolchic.jobs.settings`) and the trainer all need. Plain Python: the
command line shows them in ``--help`` without loading torch or any training code (``coolchic
decode`` loads nothing from :mod:`coolchic.train`). The recipes themselves are
:mod:`coolchic.train.recipes`.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

RecipeName = Literal["instant", "faster", "fast", "medium", "slow", "placebo"]
RECIPE_NAMES: tuple[str, ...] = get_args(RecipeName)
#: What an encode uses when it is told nothing (the CLI, the API and the batch settings).
DEFAULT_RECIPE: RecipeName = "fast"
DEFAULT_LMBDA = 1e-3


def check_lmbda(lmbda: float) -> None:
    """Refuse a rate-distortion trade-off that training cannot use (one rule for every entry).

    Raises:
        ValueError: λ is not a finite number above 0.
    """
    if not (math.isfinite(lmbda) and lmbda > 0):
        raise ValueError(f"lmbda must be a finite number > 0, found {lmbda}")


def parse_lmbdas(text: str) -> tuple[float, ...]:
    """``"4e-4,1e-3"`` → ``(0.0004, 0.001)``: one or more λ, each checked, none twice.

    Raises:
        ValueError: an entry is not a number, is not a valid λ, or repeats another.
    """
    values: list[float] = []
    for entry, value in parse_numbers(text):
        check_lmbda(value)
        if lmbda_tag(value) in map(lmbda_tag, values):
            raise ValueError(f"lmbda {entry} is given twice")
        values.append(value)
    return tuple(values)


def parse_numbers(text: str) -> list[tuple[str, float]]:
    """``"4e-4, 1e-3"`` → ``[("4e-4", 0.0004), ("1e-3", 0.001)]``: each entry as written (for
    messages) and its value.

    Raises:
        ValueError: an entry is not a number.
    """
    numbers = []
    for entry in (part.strip() for part in text.split(",")):
        try:
            numbers.append((entry, float(entry)))
        except ValueError:
            raise ValueError(f"expected numbers separated by commas, found {entry!r}") from None
    return numbers


def lmbda_tag(lmbda: float) -> str:
    """The λ in the names of the outputs of one rate point: ``1e-3``, ``2.5e-4``, ``1.5e2``.

    Scientific notation with the mantissa's trailing zeros dropped: short, the same for equal
    values, and free of characters that file systems refuse.
    """
    mantissa, exponent = f"{lmbda:.6e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    sign = "-" if exponent.startswith("-") else ""
    return f"{mantissa}e{sign}{exponent.lstrip('+-').lstrip('0') or '0'}"
