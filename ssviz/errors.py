"""User-facing errors.

Everything a user can get wrong (a bad file, a bad template, a space too large)
raises a subclass of :class:`SsvizError`. The CLI prints its message on one line
and the app shows it in an error box; anything else is a bug.

Errors about bad values also subclass :class:`ValueError` (as numpy, scipy and
TensorFlow Privacy's exposure functions raise), and a missing file also
subclasses :class:`FileNotFoundError`, so library users can catch the built-ins.
"""

from __future__ import annotations


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



class CanaryError(InvalidValueError):
    """A canary would get no training loss under the user's data pipeline: an audit of it would mean nothing."""
