"""User-facing errors.

Everything a user can get wrong (a bad file, a bad template, a space too large)
raises a subclass of :class:`SsvizError`. The CLI prints its message on one line
and the app shows it in an error box; anything else is a bug.

Errors about bad values also subclass :class:`ValueError` (as numpy, scipy and
TensorFlow Privacy's exposure functions raise), and a missing file also
subclasses :class:`FileNotFoundError`, so library users can catch the built-ins.
"""

from __future__ import annotations

from collections.abc import Iterable


class SsvizError(Exception):
    """An error caused by input, with a message meant for the user."""


class InvalidValueError(SsvizError, ValueError):
    """A value is out of range or malformed: a setting, a filler, a score."""


class SettingsError(InvalidValueError):
    """A training, search or exposure option is out of range (NaN, negative, ...)."""


class TemplateError(InvalidValueError):
    """A secret template or filler is malformed or does not fit."""


class VocabularyError(InvalidValueError):
    """Text contains a character the model cannot represent."""


class SpaceTooLargeError(InvalidValueError):
    """An exhaustive computation (or its memory) was asked for a space beyond its limit."""


class NonFiniteError(InvalidValueError):
    """A model produced NaN or infinite log-probabilities, or a score is not finite."""


class CheckpointError(SsvizError):
    """A checkpoint file is unreadable, unsafe or inconsistent."""


class MissingFileError(SsvizError, FileNotFoundError):
    """An input file or folder does not exist."""


class CheckpointNotFoundError(CheckpointError, MissingFileError):
    """The checkpoint path does not exist."""


class StoppedError(SsvizError):
    """Long work was stopped by the user before it finished."""


def stop_requested(stop) -> bool:
    """Whether long work should stop: ``stop`` is None, a ``threading.Event``, or a callable returning bool.

    One definition so every loop (scoring, search, training, ingestion, sweeps) accepts the same flags.
    """
    return stop is not None and bool(stop.is_set() if hasattr(stop, "is_set") else stop())


def clip(text: str, limit: int = 120) -> str:
    """``text`` cut to ``limit`` characters with a count of what was left out: messages stay one short line."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit:,} more characters)"


def summarize(items: Iterable, limit: int = 5) -> str:
    """The first ``limit`` items, comma-separated, and how many more (for lists of names in a message)."""
    items = list(items)
    shown = ", ".join(clip(str(i), 60) for i in items[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit:,} more"


def finite_array(name: str, values, why: str, *, error: type[SsvizError] = NonFiniteError, flat: bool = False,
                 nonempty: bool = False):
    """``values`` as float64, or one clear ``error`` saying which are not finite numbers and ``why`` that matters.

    ``flat``: a 1-d list is required (a scalar is refused); otherwise a scalar counts as one value.
    """
    import numpy as np
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise error(f"{name} must be numbers") from None
    if flat and arr.ndim != 1:
        raise error(f"{name} must be a flat list of numbers (got shape {arr.shape})")
    arr = arr.reshape(-1) if arr.ndim == 0 else arr
    if nonempty and arr.size == 0:
        raise InvalidValueError(f"{name} is empty")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise error(f"{name}: {int(bad.sum())} NaN or infinite value(s) (first at index "
                    f"{int(np.flatnonzero(bad)[0])}): {why}")
    return arr
