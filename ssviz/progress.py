"""Progress callbacks and stop flags: how every long loop reports to, and is stopped by, whoever started it.

Scoring, search, training, ingestion, sweeps and executors all take the same two
optional arguments, so one definition of each lives here:

* ``progress(done, total)``: called as work finishes (counts, not fractions); a callback that can show
  words sets ``describes = True`` and then also gets a status line, ``progress(done, total, status)``
  (a search's frontier against the secret's cost says more than a fraction of a node budget);
* ``stop``: None, a ``threading.Event``, or a callable returning True once the user asked to stop.
"""

from __future__ import annotations

from typing import Callable

from ssviz.errors import StoppedError

Progress = Callable[[int, int], None]
StopFlag = Callable[[], bool]  # a threading.Event is accepted wherever a StopFlag is


def tell(progress, done: int, total: int, status: str | None = None) -> None:
    """Report to ``progress`` (None: nobody listens), with ``status`` where the callback shows words."""
    if progress is None:
        return
    if status is not None and getattr(progress, "describes", False):
        progress(done, total, status)
    else:
        progress(done, total)


def stop_requested(stop) -> bool:
    """Whether long work should stop: ``stop`` is None, a ``threading.Event``, or a callable returning bool."""
    return stop is not None and bool(stop.is_set() if hasattr(stop, "is_set") else stop())


def check_stop(stop) -> None:
    """Raise :class:`~ssviz.errors.StoppedError` when ``stop`` is set: one line at each point a loop may end."""
    if stop_requested(stop):
        raise StoppedError("stopped by the user")


__all__ = ["Progress", "StopFlag", "check_stop", "stop_requested", "tell"]
