"""A job stops when the browser session that started it is gone, and only then."""

from __future__ import annotations

import time

from ui import jobs, sessions


def slow(progress, stop):
    while not stop.is_set():
        time.sleep(0.01)
    return "stopped"


def test_a_job_of_a_closed_session_is_stopped_and_one_of_a_live_session_is_not(monkeypatch):
    gone = set()
    monkeypatch.setattr(sessions, "POLL", 0.05)
    monkeypatch.setattr(sessions, "session_alive", lambda s: s not in gone)
    closed, live = jobs.Job(("a",), "a", slow).start(), jobs.Job(("b",), "b", slow).start()
    sessions.watch(closed, "tab-1")
    sessions.watch(live, "tab-2")
    time.sleep(0.3)
    assert closed.running and live.running
    gone.add("tab-1")
    assert closed.wait(5) and closed.result == "stopped"
    assert live.running and not live.stop.is_set()
    live.stop.set()
    assert live.wait(5)


def test_outside_a_served_app_nothing_is_watched():
    assert sessions.current_session() is None
    job = jobs.Job(("c",), "c", slow)
    sessions.watch(job)  # no session: a notebook or a test keeps its job
    assert not job.stop.is_set()


def test_the_app_listens_on_loopback_unless_told_otherwise():
    import tomllib

    from ssviz.paths import SOURCE_ROOT
    config = tomllib.loads((SOURCE_ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
