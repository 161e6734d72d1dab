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
