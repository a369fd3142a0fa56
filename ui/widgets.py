"""Shared widgets: the page scaffold (wrapper that turns errors into messages, header, banner), downloads,
and the one background-job mechanism (start, progress panel with Stop, cached result else a job)."""

from __future__ import annotations

import html
import re
import traceback
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager
from streamlit.runtime.scriptrunner import get_script_run_ctx

from ssviz.errors import SsvizError
from ssviz.messages import clip
from ssviz.paths import SOURCE_ROOT
from ssviz.plots.tokens import visible
from ui import cache, jobs, sessions, state

NAVIGATED = "ssviz_navigated"


_heap_frozen = False


def freeze_startup_heap() -> None:
    """Once per server process, after its first page run: move what the imports and the cached model built
    (about 350,000 objects) out of the garbage collector's sight. Streamlit collects garbage after every
    script run, including the progress panel's reruns; over that heap each collection took about 0.15 s of
    the server's time, time a running job's process lost too."""
    global _heap_frozen
    if not _heap_frozen:
        import gc
        gc.collect()
        gc.freeze()
        _heap_frozen = True


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


def run_page(body, *, tour_reminder: bool = True) -> None:
    """Run a page body: user errors become ``st.error``, bugs a short message with details folded away.

    Every page gets the shared sidebar and style first (:func:`chrome`; ``tour_reminder``: the workshop's
    current step in the sidebar, off on the tour page itself). Streamlit's own control flow (st.rerun,
    st.stop) derives from BaseException and passes through.
    """
    ensure_app_navigation()
    try:
        state.init()
        chrome(tour_reminder)
        body()
    except SsvizError as e:
        st.error(message(e))
    except Exception as e:  # a bug: never a bare traceback on the page
        st.error(f"Something went wrong inside ssviz ({type(e).__name__}: {clip(e, 200)}). "
                 "The rest of the app still works; please report this.")
        with st.expander("Details for a bug report"):
            st.code("".join(traceback.format_exception(e))[-4000:], language="text")


MESSAGE_LIMIT = 400  # characters of a user error shown on a page (a 10 MB template must not come back whole)


def message(error) -> str:
    """A user error as one short line for the page (every page error goes through here)."""
    return clip(str(error), MESSAGE_LIMIT)


# Presenter mode: a projector at 1280x720 seen from the back of a room. Streamlit sizes text in rem, so one
# root size scales the whole page; grey captions and thin borders become black and thick.
PRESENTER_CSS = """<style>
html { font-size: 21px; }
[data-testid="stMainBlockContainer"] { padding: 4rem 1.5rem 2rem 1.5rem; max-width: none; }
[data-testid="stAppViewContainer"], [data-testid="stSidebar"], [data-testid="stHeader"] { color: #000; }
[data-testid="stAppViewContainer"] { background: #fff; }
[data-testid="stCaptionContainer"], [data-testid="stCaptionContainer"] p, [data-testid="stWidgetLabel"] p,
[data-testid="stMetricLabel"] p { color: #000 !important; opacity: 1 !important; }
[data-testid="stMarkdownContainer"] p, [data-testid="stMarkdownContainer"] li { line-height: 1.5; }
[data-testid="stMetricValue"] { font-weight: 700; }
code { color: #000 !important; background: #e8e8e8 !important; }
a { color: #0030b0 !important; text-decoration: underline; }
button, [data-testid="stExpander"] details, [data-testid="stVerticalBlockBorderWrapper"] { border-width: 2px !important; border-color: #000 !important; }
[data-testid="stAlertContainer"] { border: 2px solid #000; }
</style>"""
PRESENTER_FONT = 20  # plotly font size in presenter mode (the default figures use 14-15)


def presentable(fig):
    """``fig`` as the page shows it: unchanged, or in presenter mode a copy with large black type, black axes,
    thicker data lines (thin guide lines such as a search tree's edges stay thin) and a horizontal legend
    moved under the plot (what the figure shows is untouched)."""
    if not state.presenter():
        return fig
    fig = go.Figure(fig)
    black = "#000000"
    fig.update_layout(font=dict(size=PRESENTER_FONT, color=black), title_font=dict(size=PRESENTER_FONT + 4,
                      color=black), legend_font=dict(size=PRESENTER_FONT - 2, color=black),
                      hoverlabel_font_size=PRESENTER_FONT - 2)
    axes = dict(tickfont=dict(size=PRESENTER_FONT - 2, color=black), title_font=dict(size=PRESENTER_FONT,
                color=black), linecolor=black, linewidth=2, gridcolor="#c8c8c8", tickcolor=black)
    fig.update_xaxes(**axes)
    fig.update_yaxes(**axes)
    fig.update_annotations(font_color=black)

    def thicker(trace) -> None:
        if trace.type == "scatter" and "lines" in (trace.mode or "lines"):
            width = trace.line.width
            if width is None or width >= 2:
                trace.update(line_width=3 if width is None else max(4, width))

    fig.for_each_trace(thicker)
    legend = fig.layout.legend
    if legend.orientation == "h":  # under the x axis's larger title, not over the title or the axis
        extra = 70
        fig.update_layout(legend=dict(yref="container", y=0, yanchor="bottom", x=0, xanchor="left"),
                          margin_b=(fig.layout.margin.b or 40) + extra, height=(fig.layout.height or 450) + extra)
    fig.update_layout(margin_t=(fig.layout.margin.t if fig.layout.margin.t is not None else 40) + 20)
    return fig


def chrome(tour_reminder: bool = True) -> None:
    """What every page shares, drawn once per run by :func:`run_page` as one row above the page's title (the
    sidebar's navigation fills a 720-pixel screen): the workshop's current step once the tour was opened
    (``tour_reminder``), the glossary and the presenter switch; and the presenter style."""
    from ui import glossary, tour
    switch = state.setting("w_presenter", False)
    # the switch's widget id includes the page's, so every page draws a new widget: seed it each run
    st.session_state["w_presenter"] = state.presenter()
    c = st.columns([4.5, 1.6, 2.2], vertical_alignment="center")
    with c[0]:
        if tour_reminder:
            tour.reminder()
    with c[1].popover("Glossary", icon=":material/menu_book:", width="stretch"):
        glossary.glossary()
    c[2].toggle("Presenter mode", help="Large type and high contrast for a projector (charts too)", **switch)
    from ui import placement
    placement.sidebar()
    # always one style element, empty when off: it replaces the previous run's (Streamlit keeps style-only
    # HTML in its event container, which a run that draws none would not clear)
    st.html(PRESENTER_CSS if state.presenter() else "<style></style>")


def page_header(title: str, intro: str) -> None:
    """Every page starts the same way: its title and a one-paragraph intro."""
    st.title(title)
    st.write(intro)


def shown(path) -> str:
    """A path relative to the working directory or the checkout when it lies inside (no server layout on screen)."""
    resolved = Path(path).resolve()
    for base in (Path.cwd().resolve(), SOURCE_ROOT):
        if resolved.is_relative_to(base):
            return str(resolved.relative_to(base))
    return str(path)


def uploader_key(name: str) -> str:
    """The key of file uploader ``name`` now: a fresh one after :func:`release_upload`."""
    generation = st.session_state.get(f"ssviz_gen_{name}", 0)
    return name if generation == 0 else f"{name}_{generation}"


def release_upload(name: str) -> None:
    """Free an uploaded file once it was read (a checkpoint can be 200 MB): drop its bytes from
    Streamlit's upload store and give the uploader a fresh key, so the old widget and its copy go too."""
    uploaded = st.session_state.get(uploader_key(name))
    ctx = get_script_run_ctx()
    if uploaded is not None and ctx is not None and isinstance(ctx.uploaded_file_mgr, MemoryUploadedFileManager):
        ctx.uploaded_file_mgr.remove_file(session_id=ctx.session_id, file_id=uploaded.file_id)
    st.session_state[f"ssviz_gen_{name}"] = st.session_state.get(f"ssviz_gen_{name}", 0) + 1


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "data"


def download_table(df: pd.DataFrame, name: str, key: str | None = None) -> None:
    from ssviz.csvcells import to_csv_bytes  # user names like =HYPERLINK(...) must not run as formulas
    st.download_button("Download CSV", to_csv_bytes(df), file_name=f"{slug(name)}.csv",
                       mime="text/csv", key=key or f"csv_{slug(name)}", icon=":material/download:",
                       on_click="ignore")


def download_figure(fig, name: str, key: str | None = None) -> None:
    """A standalone HTML file (plotly.js embedded, so it opens offline), built only when clicked (~5 MB)."""
    st.download_button("Download figure (HTML)", lambda: fig.to_html(include_plotlyjs=True, full_html=True),
                       file_name=f"{slug(name)}.html", mime="text/html", key=key or f"html_{slug(name)}",
                       icon=":material/download:", on_click="ignore")


def chart(fig, name: str, key: str | None = None) -> None:
    """A plotly figure with its HTML download under it (in presenter mode: large type, high contrast)."""
    fig = presentable(fig)
    st.plotly_chart(fig, width="stretch", key=key and f"chart_{key}",
                    config={"displayModeBar": False} if state.presenter() else None)
    download_figure(fig, name, key=key and f"html_{key}")


def model_banner() -> state.CurrentModel:
    """One line naming the current model, template and secret (what every analysis page works on)."""
    current = state.current_model()
    st.caption(f"Model: **{clip(current.name, 80)}** · template: `{clip(state.get(state.TEMPLATE), 80)}` · "
               f"secret under test: `{clip(state.get(state.SECRET), 40)}` — change them on the Model and "
               "Template pages.")
    return current


def analysis_header(title: str, intro: str):
    """Title, one-paragraph intro and the banner of an analysis page; returns (model, template, secret)."""
    page_header(title, intro)
    current = model_banner()
    template, secret = state.secret_under_test(current.model)
    return current, template, secret


# a slot's wait for a new job before a progress panel is drawn, in multiples of ``jobs.QUICK_WAIT`` (default 1):
# a page whose usual job takes a little longer sets its slot's, so the result is drawn by the click's own run
QUICK_WAIT_FACTORS: dict[str, float] = {}


def start_job(slot: str, job: jobs.Job) -> jobs.Job:
    """Make ``job`` the one job in ``slot`` (a previous one is stopped) and start it; wait ``QUICK_WAIT``
    (times the slot's :data:`QUICK_WAIT_FACTORS`) so that a short run is drawn finished in this same page run,
    without a progress panel."""
    old: jobs.Job | None = st.session_state.get(slot)
    if old is not None:
        old.stop.set()
    st.session_state[slot] = job.start()
    sessions.watch(job)  # a closed tab stops it
    job.wait(jobs.QUICK_WAIT * QUICK_WAIT_FACTORS.get(slot, 1.0))
    return job


def job_for(slot: str, key: tuple) -> jobs.Job | None:
    """The job in ``slot`` if it was started for inputs ``key`` (running or ended), else None."""
    job: jobs.Job | None = st.session_state.get(slot)
    return job if job is not None and job.key == key else None


def background(slot: str, key: tuple, label: str, fn, *, start: bool) -> jobs.Job | None:
    """The job in ``slot`` for inputs ``key`` (one per slot), started when ``start`` and none is running.

    While it runs this draws :func:`job_panel` and returns the running job; a job for other inputs is
    stopped and forgotten. Returns None when there is no job for ``key``.
    """
    job: jobs.Job | None = st.session_state.get(slot)
    if job is not None and job.key != key:
        job.stop.set()
        job = st.session_state[slot] = None
    if start and (job is None or not job.running):
        job = start_job(slot, jobs.Job(key, label, fn))
    if job is not None and job.running:
        job_panel(slot)
    return job


def cached_job(slot: str, key: tuple, label: str, fn, *, start: bool, auto: bool = False, again: str = ""):
    """The result for inputs ``key``: computed earlier in this session, else from a background job.

    The job starts when ``start`` (a click), or when ``auto`` unless a job for ``key`` already ran
    (a stopped or failed run is not restarted by itself). A complete result is cached; a run the user
    stopped keeps its partial result (if ``fn`` returns one) for this page, uncached. None while the
    job runs, when it failed (the message, plus ``again``, is shown) or when nothing was asked for.
    """
    res = cache.result(key)
    if res is not None:
        return res
    job = background(slot, key, label, fn, start=start or (auto and job_for(slot, key) is None))
    if job is None or job.running:
        return None
    if job.error:
        show = st.warning if job.stopped else st.error
        show(f"{'Stopped' if job.stopped else 'Failed'}: {job.error}." + (f" {again}" if again else ""))
        return None
    if not job.stop.is_set():
        cache.remember(key, job.result)
    return job.result


def saved_run_outcome(slot: str, after: str = "") -> None:
    """An on-the-spot run that saves a folder: its progress panel while it runs, then one line, its error or
    where it was saved (``after``: what the page adds, e.g. " (shown above)")."""
    job: jobs.Job | None = st.session_state.get(slot)
    if job is None:
        return
    if job.running:
        job_panel(slot)
    elif job.error:
        (st.warning if job.stopped else st.error)(f"{job.label}: {'stopped: ' if job.stopped else ''}{job.error}")
    else:
        st.success(f"{job.label}: finished in {job.seconds:.0f} s, saved in `{shown(job.result['path'])}`{after}.")


def newly_finished(slot: str) -> jobs.Job | None:
    """The job in ``slot`` if it ended with a result the page has not taken yet, marked taken: a page shows a
    just-finished run once, then leaves the user's choice alone."""
    job: jobs.Job | None = st.session_state.get(slot)
    if job is not None and not job.running and job.result is not None and not job.meta.get("collected"):
        job.meta["collected"] = True
        return job
    return None


def job_panel(slot: str, live=None, every: float = 1.0) -> None:
    """The one progress panel: the job in ``slot``'s progress bar and Stop button, and ``live(snapshot)``
    (e.g. a chart of the records so far) under them, redrawn every ``every`` seconds while it runs;
    the whole page reruns once the job ends, to show its outcome."""
    st.fragment(_job_panel, run_every=every)(slot, live)


def _stop_job(slot: str) -> None:
    job = st.session_state.get(slot)
    if job is not None:
        job.stop.set()


def _job_panel(slot: str, live) -> None:
    job: jobs.Job | None = st.session_state.get(slot)
    if job is None or not job.running:
        st.rerun(scope="app")  # finished: the page shows the outcome
    snap = job.snapshot()
    c1, c2 = st.columns([6, 1])
    c1.progress(snap.fraction, text=snap.text)
    c2.button("Stop", icon=":material/stop:", key=f"stop_{slot}", on_click=_stop_job, args=(slot,),
              disabled=job.stop.is_set())
    if live is not None:
        live(snap)


CHIP = ("font-family:monospace;font-size:1.15rem;padding:0.15rem 0.45rem;border-radius:0.3rem;"
        "border:2px solid #8fa8c8;background:#eef2f7;color:#111;white-space:pre")
SECRET_CHIP = CHIP.replace("#8fa8c8", "#c0392b").replace("#eef2f7", "#fdecea")


def unit_chips(tokens: list[str], secret: dict[int, float]) -> str:
    """The units (characters or tokens) of a text side by side, large enough to point at; the secret's
    outlined in red."""
    cells = [f'<span style="{SECRET_CHIP}" title="part of the secret">{html.escape(visible(t))}</span>'
             if i in secret else f'<span style="{CHIP}">{html.escape(visible(t))}</span>'
             for i, t in enumerate(tokens)]
    return '<div style="display:flex;flex-wrap:wrap;gap:0.35rem;margin:0.2rem 0 0.8rem">' + "".join(cells) + "</div>"
