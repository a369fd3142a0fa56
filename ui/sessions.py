"""A job lives as long as the browser session that started it: closing the tab stops its work.

Streamlit keeps a session's objects after its connection closes, so a job thread would go on
computing for minutes for nobody. One watchdog thread checks every :data:`POLL` seconds whether
each running job's session is still connected, and sets the job's ``stop`` when it is not.
"""

from __future__ import annotations

import threading
import time
import weakref

POLL = 1.0  # seconds between checks: a closed tab's jobs stop within a few of these

_watched: list[tuple[str, weakref.ref]] = []
_lock = threading.Lock()
_thread: threading.Thread | None = None


def current_session() -> str | None:
    """The id of the browser session this page run serves (None outside a served app, e.g. in tests)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx
    ctx = get_script_run_ctx(suppress_warning=True)
    return ctx.session_id if ctx is not None else None


def session_alive(session: str) -> bool:
    """Whether ``session`` still has a connected browser (True where no app server runs)."""
    from streamlit.runtime import Runtime
    return not Runtime.exists() or Runtime.instance().is_active_session(session)


def watch(job, session: str | None = None) -> None:
    """Stop ``job`` (anything with ``running`` and a ``stop`` event) once ``session`` is gone."""
    session = session or current_session()
    if session is None:
        return
    global _thread
    with _lock:
        _watched.append((session, weakref.ref(job)))
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_loop, daemon=True, name="job-session-watch")
            _thread.start()


def _loop() -> None:
    while True:
        time.sleep(POLL)
        with _lock:
            entries = list(_watched)
        keep = []
        for session, ref in entries:
            job = ref()
            if job is None or not job.running:
                continue
            if session_alive(session):
                keep.append((session, ref))
            else:
                job.stop.set()
        with _lock:
            _watched[:] = keep + [e for e in _watched if e not in entries]
