"""Workshop tour: a guided 60-90 minute walk over the pages, and live memorization on a laptop.

The steps are data (``ui.tour``); the live demo trains with the app's one training job (``ui.jobs``), its
progress panel and Stop (``ui.widgets.job_panel``), and draws the library's training chart.
"""

from __future__ import annotations

import math

import streamlit as st

from ssviz.errors import SsvizError
from ssviz.plots.training import training_progress
from ssviz.templates import Template
from ssviz.train import Canary
from ui import cache, state, tour
from ui.jobs import Job, train_and_save
from ui.widgets import chart, job_panel, message, page_header, run_page, start_job

JOB = "ssviz_tour_job"
RUNS = "ssviz_tour_runs"  # insertions -> the finished live run: {"secret", "records", "path", "stopped", "error"}


def live_secret(template: Template) -> str | None:
    """The secret the room chose (a random filler until someone types one); None after a message."""
    default = template.random_fillers(1, seed=2019)[0]
    typed = st.text_input(f"The secret: a filler of “{template.text}” (ask the room)",
                          max_chars=len(template.format(default)), **state.setting("w_tour_secret", default))
    if not typed.strip():  # an emptied box (or its state lost between page runs) keeps a secret to train with
        typed = st.session_state.get("ssviz_tour_secret") or default
    try:
        return template.normalize(typed)
    except SsvizError as e:
        st.error(message(e))
        return None


def collect_finished() -> None:
    """Keep a finished live run's curves (once), so the other run can be drawn beside it."""
    job: Job | None = st.session_state.get(JOB)
    if job is None or job.running or job.meta.get("collected"):
        return
    canary: Canary = job.meta["canary"]
    st.session_state.setdefault(RUNS, {})[canary.insertions] = {
        "secret": canary.secret, "records": job.records, "seconds": job.seconds, "error": job.error,
        "path": job.result["path"] if job.result else None, "stopped": bool(job.result and job.result["stopped"])}
    job.meta["collected"] = True


def start_run(template: Template, secret: str, insertions: int) -> None:
    """One live run as the app's training job (the demo corpus, whatever the Model page has loaded)."""
    canary = Canary(template, secret, insertions)
    job = train_and_save(cache.demo_corpus_text()[:tour.LIVE_CHARS], tour.LIVE_CONFIG, canary, state.TRAINED_DIR,
                         name=f"workshop-{insertions}x")
    start_job(JOB, job)
    st.rerun()


def live_section() -> None:
    """Train on part of the demo corpus with the canary inserted many times, then once; exposure per epoch."""
    template = Template(tour.LIVE_TEMPLATE)
    space = template.space_size
    cfg = tour.LIVE_CONFIG
    st.caption(f"{cfg.layers}x{cfg.hidden} LSTM, learning rate {cfg.lr:g}, {tour.LIVE_CHARS // 1000} KB of the "
               f"demo corpus, up to {cfg.epochs} epochs; exact exposure among all {space:,} fillers after every "
               "epoch. Stop whenever the point is made.")
    secret = live_secret(template)
    collect_finished()
    job: Job | None = st.session_state.get(JOB)
    running = bool(job and job.running)
    cols = st.columns(len(tour.LIVE_INSERTIONS))
    for col, insertions in zip(cols, tour.LIVE_INSERTIONS):
        label = f"Train: inserted {'once' if insertions == 1 else f'{insertions} times'}"
        if col.button(label, key=f"tour_train_{insertions}", disabled=running or secret is None,
                      type="primary" if insertions != 1 else "secondary", icon=":material/play_arrow:"):
            start_run(template, secret, insertions)
    if running:
        live_insertions = job.meta["canary"].insertions
        job_panel(JOB, live=lambda snap: runs_view({**finished_runs(secret),
                                                    live_insertions: (snap.records, True, None)}, space),
                  every=1.0)
    else:
        runs_view(finished_runs(secret), space, offer=True)


def runs_view(shown: dict, space: int, offer: bool = False) -> None:
    """Both runs side by side, captions in one row and charts in the next, so that the two charts line up.

    ``shown``: insertions -> (records, running, run), for the run in the progress panel or a finished one
    (``run``: its record, with its error and saved model, which ``offer`` offers as the current model).
    """
    cols = st.columns(len(tour.LIVE_INSERTIONS))
    for col, insertions in zip(cols, tour.LIVE_INSERTIONS):
        records, running, run = shown.get(insertions, ([], False, None))
        col.markdown(tour.live_caption(insertions, records, space, running))
        if run and run["error"]:
            col.warning(f"Training ended: {run['error']}")
    cols = st.columns(len(tour.LIVE_INSERTIONS))
    for col, insertions in zip(cols, tour.LIVE_INSERTIONS):
        records, running, run = shown.get(insertions, ([], False, None))
        with col:
            if records:
                label = "once" if insertions == 1 else f"{insertions} times"
                chart(training_progress(records, math.log2(space), title=f"Canary inserted {label}"),
                      f"live-memorization-{insertions}x",
                      key=f"tour_live_{len(records)}" if running else f"tour_run_{insertions}")
            if offer and run and run["path"] is not None:
                st.button("Use this model on the other pages", key=f"tour_use_{insertions}", on_click=use_model,
                          args=(insertions, run["path"]))


def finished_runs(secret: str | None) -> dict:
    """This session's finished live runs for the current secret: insertions -> (records, False, run)."""
    return {n: (run["records"], False, run) for n, run in st.session_state.get(RUNS, {}).items()
            if run["secret"] == secret}


def use_model(insertions: int, path) -> None:
    """Make a live run's model current: the next steps (exposure, extraction) then work on it."""
    key = f"file:{path}"
    cfg = tour.LIVE_CONFIG
    state.register_model(key, f"Workshop: {cfg.layers}x{cfg.hidden} LSTM, canary inserted {insertions}x "
                              f"({path.name})", str(path))
    state.select_model(key)


def body() -> None:
    page_header("Workshop tour", "One idea per step, a question for the room, and its page opened with the right "
                "settings.")
    st.session_state.setdefault(tour.STEP, 0)
    tour.navigation()
    tour.step_card(tour.current(), live=live_section)
    tour.agenda()


run_page(body, tour_reminder=False)
