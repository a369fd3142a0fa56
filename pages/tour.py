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


def run_view(insertions: int, records: list[dict], space: int, running: bool, key: str) -> None:
    st.markdown(tour.live_caption(insertions, records, space, running))
    if records:
        label = "once" if insertions == 1 else f"{insertions} times"
        chart(training_progress(records, math.log2(space), title=f"Canary inserted {label}"),
              f"live-memorization-{insertions}x", key=key)


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
    runs = st.session_state.get(RUNS, {})
    cols = st.columns(len(tour.LIVE_INSERTIONS))
    for col, insertions in zip(cols, tour.LIVE_INSERTIONS):
        label = f"Train: inserted {'once' if insertions == 1 else f'{insertions} times'}"
        if col.button(label, key=f"tour_train_{insertions}", disabled=running or secret is None,
                      type="primary" if insertions != 1 else "secondary", icon=":material/play_arrow:"):
            start_run(template, secret, insertions)
    if running:
        live_insertions = job.meta["canary"].insertions

        def live(snap) -> None:
            for col, insertions in zip(st.columns(len(tour.LIVE_INSERTIONS)), tour.LIVE_INSERTIONS):
                with col:
                    if insertions == live_insertions:
                        run_view(insertions, snap.records, space, True, f"tour_live_{len(snap.records)}")
                    else:
                        shown_run(insertions, runs, space, secret)

        job_panel(JOB, live=live, every=1.0)
        return
    for col, insertions in zip(st.columns(len(tour.LIVE_INSERTIONS)), tour.LIVE_INSERTIONS):
        with col:
            shown_run(insertions, runs, space, secret)
            run = runs.get(insertions)
            if run and run["path"] is not None and run["secret"] == secret:
                st.button("Use this model on the other pages", key=f"tour_use_{insertions}", on_click=use_model,
                          args=(insertions, run["path"]))


def shown_run(insertions: int, runs: dict, space: int, secret: str | None) -> None:
    """A finished run of this session (for the current secret), or what to press."""
    run = runs.get(insertions)
    if run is None or run["secret"] != secret:
        st.markdown(tour.live_caption(insertions, [], space, False))
        return
    if run["error"]:
        st.warning(f"Training ended: {run['error']}")
    run_view(insertions, run["records"], space, False, f"tour_run_{insertions}")


def use_model(insertions: int, path) -> None:
    """Make a live run's model current: the next steps (exposure, extraction) then work on it."""
    key = f"file:{path}"
    cfg = tour.LIVE_CONFIG
    state.register_model(key, f"Workshop: {cfg.layers}x{cfg.hidden} LSTM, canary inserted {insertions}x "
                              f"({path.name})", str(path))
    state.select_model(key)


def body() -> None:
    page_header("Workshop tour", "A guided walk through the app for a 60-90 minute workshop: each step explains "
                "one idea, gives a question to ask the room, and opens the page where it happens with the "
                "right settings. The glossary is in the sidebar on every page.")
    st.session_state.setdefault(tour.STEP, 0)
    tour.navigation()
    tour.step_card(tour.current(), live=live_section)
    tour.agenda()


run_page(body, tour_reminder=False)
