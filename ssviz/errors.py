"""User-facing errors.

Everything a user can get wrong (a bad file, a bad template, a space too large)
raises a subclass of :class:`SsvizError`. The CLI prints its message on one line
and the app shows it in an error box; anything else is a bug.
"""


class SsvizError(Exception):
    """An error caused by input, with a message meant for the user."""


class CheckpointError(SsvizError):
    """A checkpoint file is unreadable, unsafe or inconsistent."""


class TemplateError(SsvizError):
    """A secret template or filler is malformed or does not fit."""


class VocabularyError(SsvizError):
    """Text contains a character the model cannot represent."""


class SpaceTooLargeError(SsvizError):
    """An exhaustive computation was asked for a space beyond its limit."""


class StoppedError(SsvizError):
    """Long work was stopped by the user before it finished."""


def stop_requested(stop) -> bool:
    """Whether long work should stop: ``stop`` is None, a ``threading.Event``, or a callable returning bool.

    One definition so every loop (scoring, search, training, ingestion, sweeps) accepts the same flags.
    """
    return stop is not None and bool(stop.is_set() if hasattr(stop, "is_set") else stop())
