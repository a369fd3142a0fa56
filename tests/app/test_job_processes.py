"""App jobs run in their own process: results, progress, records and errors come back as from a thread,
and a stopped or abandoned job ends even when its work does not cooperate."""

from __future__ import annotations

import os
import time

import pytest

from ssviz.errors import SettingsError, StoppedError
from ui import jobs, sessions

pytestmark = [pytest.mark.job_processes, pytest.mark.slow]  # each job starts a process


def counting(progress, stop):
    for i in range(1, 6):
        progress(i, 5, f"step {i}")
        progress.record({"step": i})
        time.sleep(0.02)
    return {"pid": os.getpid()}


def refusing(progress, stop):
    raise SettingsError("that setting is out of range")


def crashing(progress, stop):
    os._exit(3)


def cooperative(progress, stop):
    done = 0
    while not stop.is_set():
        done += 1
        time.sleep(0.01)
    raise StoppedError(f"stopped after {done} steps")


def stubborn(progress, stop):
    while True:  # never looks at stop
        time.sleep(0.05)


def test_a_job_runs_in_another_process_and_streams_its_progress_and_records():
    job = jobs.Job(("k",), "Counting", counting).start()
    assert job.wait(60)
    assert job.error is None and job.result["pid"] != os.getpid() and job.pid == job.result["pid"]
    assert [r["step"] for r in job.records] == [1, 2, 3, 4, 5]
    snap = job.snapshot()
    assert snap.fraction == 1.0 and "step 5" in snap.text


def test_errors_come_back_as_one_line():
    refused = jobs.Job(("a",), "Refusing", refusing).start()
    crashed = jobs.Job(("b",), "Crashing", crashing).start()
    assert refused.wait(60) and crashed.wait(60)
    assert refused.error == "that setting is out of range" and not refused.stopped
    assert crashed.error.startswith("internal error: the job's process ended without an answer") and "3" in crashed.error


def test_a_stopped_job_returns_its_partial_answer(monkeypatch):
    monkeypatch.setattr(jobs, "KILL_GRACE", 120.0)  # however loaded the machine, the answer comes first
    polite = jobs.Job(("p",), "Polite", cooperative).start()
    time.sleep(1.0)
    assert polite.running
    polite.stop.set()
    assert polite.wait(150) and polite.stopped and polite.error.startswith("stopped after")


def test_a_job_that_ignores_stop_is_ended():
    rude = jobs.Job(("r",), "Rude", stubborn).start()
    time.sleep(1.0)
    assert rude.running
    rude.stop.set()
    assert rude.wait(jobs.KILL_GRACE + 10) and rude.stopped and "ended without a partial result" in rude.error


def test_a_closed_session_ends_its_job_process(monkeypatch):
    gone = set()
    monkeypatch.setattr(sessions, "POLL", 0.05)
    monkeypatch.setattr(sessions, "session_alive", lambda s: s not in gone)
    job = jobs.Job(("s",), "Abandoned", stubborn).start()
    sessions.watch(job, "tab-9")
    time.sleep(0.5)
    assert job.running
    gone.add("tab-9")
    assert job.wait(jobs.KILL_GRACE + 10) and job.stopped
    pid = job.pid
    with pytest.raises(ProcessLookupError):  # the process itself is gone, not only its pump
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)


@pytest.mark.slow
def test_the_pages_jobs_cross_to_their_process_and_back(tmp_path, monkeypatch):
    """As served: the Exposure and Extraction pages' measurements and the Model page's training run in job
    processes, and their results are drawn."""
    from tests.app.test_app import metric, open_page, train_on_the_model_page

    def finished(at, slot: str):
        job = at.session_state[slot]
        assert job.wait(120), job.snapshot().text
        at.run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        return job

    at = open_page("exposure")
    at.selectbox(key="w_exp_method").select("sampled").run()
    at.select_slider(key="w_exp_samples").set_value(200).run()
    at.button(key="exp_run").click().run()
    job = finished(at, "ssviz_exposure_job")
    assert metric(at, "Exposure").endswith("bits") and job.pid not in (None, os.getpid())
    at.switch_page("pages/extraction.py").run()
    at.button(key="ext_run").click().run()
    job = finished(at, "ssviz_extraction_job")
    assert metric(at, "Nodes expanded") and job.pid not in (None, os.getpid())
    _, job = train_on_the_model_page(tmp_path, monkeypatch, "lstm", "My PIN is {d:4}", "4821")
    assert job.pid not in (None, os.getpid()) and len(job.records) == 1 and job.result["path"].parent == tmp_path
