"""Shared widgets: the page wrapper that turns errors into messages, downloads, progress, banners."""

from __future__ import annotations

import re
import traceback
from pathlib import Path

import pandas as pd
import streamlit as st

from ssviz.paths import SOURCE_ROOT
from ssviz.errors import SsvizError
from ui import jobs, state


NAVIGATED = "ssviz_navigated"


def mark_navigation() -> None:
    """Called by app.py before it runs the chosen page: this run went through st.navigation."""
    st.session_state[NAVIGATED] = True


def ensure_app_navigation() -> None:
    """Re-run through app.py when Streamlit ran a page file on its own.

    Streamlit keeps a legacy mode for apps with a ``pages/`` folder: until the
    entry point has called ``st.navigation`` once in this server process, a deep
    link such as ``/exposure`` executes ``pages/exposure.py`` directly, without
    app.py's navigation, page config or theme. Switching that mode off and
    rerunning makes Streamlit execute app.py, which then shows the same page.
    """
    if st.session_state.get(NAVIGATED) or st.session_state.get(NAVIGATED + "_retried"):
        return  # through app.py, or already retried once (a page started on its own with streamlit run)
    st.session_state[NAVIGATED + "_retried"] = True
    try:
        from streamlit.runtime.pages_manager import PagesManager
        PagesManager.uses_pages_directory = False
    except (ImportError, AttributeError):  # a future Streamlit without the legacy mode
        return
    st.rerun()


def run_page(body) -> None:
    """Run a page body: user errors become ``st.error``, bugs a short message with details folded away.

    Streamlit's own control flow (st.rerun, st.stop) derives from BaseException and passes through.
    """
    ensure_app_navigation()
    try:
        state.init()
        body()
    except SsvizError as e:
        st.error(str(e))
    except Exception as e:  # a bug: never a bare traceback on the page
        st.error(f"Something went wrong inside ssviz ({type(e).__name__}: {str(e)[:200]}). "
                 "The rest of the app still works; please report this.")
        with st.expander("Details for a bug report"):
            st.code("".join(traceback.format_exception(e))[-4000:], language="text")


def shown(path) -> str:
    """A path relative to the working directory or the checkout when it lies inside (no server layout on screen)."""
    resolved = Path(path).resolve()
    for base in (Path.cwd().resolve(), SOURCE_ROOT):
        if resolved.is_relative_to(base):
            return str(resolved.relative_to(base))
    return str(path)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "data"


def download_table(df: pd.DataFrame, name: str, key: str | None = None) -> None:
    st.download_button("Download CSV", df.to_csv(index=False).encode("utf-8"), file_name=f"{slug(name)}.csv",
                       mime="text/csv", key=key or f"csv_{slug(name)}", icon=":material/download:",
                       on_click="ignore")


def download_figure(fig, name: str, key: str | None = None) -> None:
    """A standalone HTML file (plotly.js embedded, so it opens offline), built only when clicked (~5 MB)."""
    st.download_button("Download figure (HTML)", lambda: fig.to_html(include_plotlyjs=True, full_html=True),
                       file_name=f"{slug(name)}.html", mime="text/html", key=key or f"html_{slug(name)}",
                       icon=":material/download:", on_click="ignore")


def chart(fig, name: str, key: str | None = None) -> None:
    """A plotly figure with its HTML download under it."""
    st.plotly_chart(fig, width="stretch", key=key and f"chart_{key}")
    download_figure(fig, name, key=key and f"html_{key}")


def model_banner() -> state.CurrentModel:
    """One line naming the current model, template and secret (what every analysis page works on)."""
    current = state.current_model()
    st.caption(f"Model: **{current.name}** · template: `{state.get(state.TEMPLATE)}` · "
               f"secret under test: `{state.get(state.SECRET)}` — change them on the Model and Template pages.")
    return current


def analysis_header(title: str, intro: str):
    """Title, one-paragraph intro and the banner of an analysis page; returns (model, template, secret)."""
    st.title(title)
    st.write(intro)
    current = model_banner()
    template, secret = state.secret_under_test(current.model)
    return current, template, secret


def background(slot: str, key: tuple, label: str, fn, *, start: bool) -> jobs.Job | None:
    """The job in ``slot`` for inputs ``key`` (one per page), started when ``start`` and none is running.

    While it runs this draws its progress and a Stop button (a fragment polling twice a second, which
    reruns the page when the job ends) and returns the running job; a job for other inputs is stopped
    and forgotten. Returns None when there is no job for ``key``.
    """
    job: jobs.Job | None = st.session_state.get(slot)
    if job is not None and job.key != key:
        job.stop.set()
        job = st.session_state[slot] = None
    if start and (job is None or not job.running):
        job = st.session_state[slot] = jobs.Job(key, label, fn)
        job.wait(jobs.QUICK_WAIT)
    if job is not None and job.running:
        _job_panel(slot)
    return job


def _stop_job(slot: str) -> None:
    job = st.session_state.get(slot)
    if job is not None:
        job.stop.set()


@st.fragment(run_every=0.5)
def _job_panel(slot: str) -> None:
    job: jobs.Job | None = st.session_state.get(slot)
    if job is None or not job.running:
        st.rerun(scope="app")  # finished: the page shows the outcome
    frac, text = job.snapshot()
    c1, c2 = st.columns([6, 1])
    c1.progress(frac, text=text)
    c2.button("Stop", icon=":material/stop:", key=f"stop_{slot}", on_click=_stop_job, args=(slot,),
              disabled=job.stop.is_set())
