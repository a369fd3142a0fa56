"""What every scorer shares about a template's space: its enumeration order, its size limit, units and flags.

Both the character scorer (:mod:`ssviz.scoring`) and the token scorer
(:mod:`ssviz.token_scoring`) import these, and :mod:`ssviz.scoring` routes
token-level models to the token scorer, so they live here rather than in either.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import numpy as np

from ssviz.errors import SpaceTooLargeError, StoppedError, clip, stop_requested
from ssviz.templates import Template

LN2 = math.log(2.0)
DEFAULT_CHUNK = 1 << 15
EXHAUSTIVE_LIMIT = 10 ** 7

Progress = Callable[[int, int], None]
StopFlag = Callable[[], bool]


def _check_stop(stop) -> None:
    if stop_requested(stop):
        raise StoppedError("stopped by the user")


def iter_space_chunks(template: Template, chunk_size: int = DEFAULT_CHUNK) -> Iterable[tuple[int, np.ndarray]]:
    """The whole space in lexicographic order, as ``(first_index, digits)`` chunks."""
    for lo in range(0, template.space_size, chunk_size):
        hi = min(lo + chunk_size, template.space_size)
        yield lo, template.digits_of_indices(np.arange(lo, hi, dtype=np.int64))


def check_exhaustive(template: Template, limit: int = EXHAUSTIVE_LIMIT, rate: float = 1e6,
                     hint: str = "use sampling / skew-normal or search instead") -> None:
    if template.space_size > limit:
        seconds = template.space_size / rate
        raise SpaceTooLargeError(
            f"the space of {clip(template.text, 80)!r} has {template.space_size:.3g} fillers, more than the "
            f"limit of {limit:.3g} for exhaustive enumeration (about {human_seconds(seconds)} on this CPU); {hint}")


def human_seconds(s: float) -> str:
    for unit, size in (("years", 3.15e7), ("days", 86400), ("hours", 3600), ("minutes", 60)):
        if s >= size:
            return f"{s / size:.3g} {unit}"
    return f"{s:.2g} seconds"
