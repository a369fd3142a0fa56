"""Page "Long tail": which training examples a model memorized, and why those (Feldman; Zhang et al.).

A pool of models, each trained on a random half of the examples: an example is memorized when the
models trained with it predict it far better than the models trained without it. The bundled demo
pool loads at once; a small pool runs on the spot as the app's background job (progress, Stop). All
numbers come from :mod:`ssviz.longtail`, recomputed from the pool's matrices.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import streamlit as st

from ssviz.errors import SsvizError
from ssviz.longtail import demo
from ssviz.longtail.counterfactual import redact_text, unit_gains
from ssviz.plots.longtail import gain_chips, mem_histogram, mem_vs_novelty
from ssviz.plots.verbatim import extraction_probability, rate_by_duplicates, rate_by_prefix
from ui import cache, longtail, state
from ui.jobs import Job
from ui.widgets import (chart, download_table, message, newly_finished, page_header, run_page, saved_run_outcome, shown,
                        start_job)

JOB = "ssviz_longtail_job"
SOURCE = "w_lt_source"
CHOSEN = "ssviz_lt_source"
SHOWN = "ssviz_longtail_shown"  # the pool drawn last (the Report page includes it)
METRICS = {"mem_accuracy": "per-unit accuracy", "mem_log_likelihood": "log-likelihood (bits per unit)"}
TOP = 15


def choose_pool() -> Path | None:
    options = {str(demo.DEMO_DIR): "bundled: demo pool (12 LSTMs, planted novel and duplicated lines)"}
    options.update({str(p): f"run here: {shown(p)}" for p in longtail.saved_pools()})
    keys = [*options, "other"]
    st.session_state.setdefault(CHOSEN, keys[0])
    if st.session_state[CHOSEN] not in keys:
        st.session_state[CHOSEN] = keys[0]
    st.session_state[SOURCE] = st.session_state[CHOSEN]
    c1, c2 = st.columns([3, 2])
    pick = c1.selectbox("Pool", keys, key=SOURCE, on_change=_chosen,
                        format_func=lambda k: options.get(k, "another pool folder under data/ or models/..."))
    if pick == "other":
        typed = c2.text_input("Pool folder (under data/ or models/)", key="w_lt_path",
                              help="A folder written by `python -m ssviz counterfactual --out DIR`.")
        if not typed:
            st.info("Type the folder of a finished pool.")
            return None
        try:
            return longtail.typed_pool(typed, cache.results_dirs())
        except SsvizError as e:
            st.error(message(e))
            return None
    return Path(pick)


def _chosen() -> None:
    st.session_state[CHOSEN] = st.session_state[SOURCE]


def view_of(folder: Path, metric: str) -> dict:
    """The pool's view for ``metric``, once per content of its matrices in this session."""
    return cache.of_files("longtail", folder, ("inclusion.parquet", "metrics.parquet"),
                          lambda: longtail.pool_view(folder, metric), metric)


def show_pool(view: dict, folder: Path, reveal: bool) -> None:
    pool, mem, metric, roles = view["pool"], view["mem"], view["metric"], view["roles"]
    values = mem[metric].to_numpy(float)
    low = mem[metric + "_low"].to_numpy(float)
    st.caption(f"{len(pool.models)} models, {len(pool.examples):,} training examples, "
               f"{len(pool.val_examples):,} validation examples. Folder: `{shown(folder)}`.")
    c = st.columns(4)
    c[0].metric("Models", f"{len(pool.models)}")
    c[1].metric("Mean memorization", f"{longtail.mean_or_nan(values):+.3f}",
                help="Mean over training examples of IN - OUT")
    c[2].metric("Examples clearly memorized", f"{int(np.sum(low > 0)):,}",
                help="Examples whose 95% bootstrap interval lies above 0")
    if roles is not None:
        r = np.asarray(roles)
        novel = longtail.mean_or_nan(values[r == "novel"])
        c[3].metric("Planted novel lines", f"{novel:+.3f}",
                    help=f"vs ordinary {longtail.mean_or_nan(values[r == 'ordinary']):+.3f}, duplicated "
                         f"{longtail.mean_or_nan(values[r == 'duplicated']):+.3f}")
    c1, c2 = st.columns(2)
    with c1:
        st.subheader("Distribution of memorization")
        chart(mem_histogram(values, roles, metric), "longtail-mem", key="lt_hist")
    with c2:
        st.subheader("Memorization against novelty and frequency")
        chart(mem_vs_novelty(values, view["out_bits"], view["frequency"], pool.texts, roles, metric),
              "longtail-novelty", key="lt_scatter")
    st.caption("Right: examples the models that never saw them find surprising; marker size: how often the text "
               "occurs. Feldman's long tail predicts rare, novel examples at the top right; a duplicated text is "
               "learned from its other copies, so leaving one copy out changes little.")
    st.subheader("Most memorized examples")
    table = mem.assign(text=[redact_text(t, reveal) for t in mem["text"]], occurs=view["frequency"])
    if roles is not None:
        table["role"] = roles
    table = table.sort_values(metric, ascending=False, na_position="last").head(TOP)
    cols = ["example", "text", metric, metric + "_low", metric + "_high", "occurs"] + (["role"] if roles else [])
    st.dataframe(table[cols].round(4), hide_index=True, width="stretch")
    pairs = view["pairs"]
    if pairs:
        st.subheader("Highest influence: a training line and the validation line it helps most")
        for p in pairs[:5]:
            a, b = st.columns(2)
            a.markdown(f"**train {p['train_example']}**: {_plain(redact_text(p['train_text'], reveal))}")
            b.markdown(f"**validation {p['validation_example']}**: "
                       f"{_plain(redact_text(p['validation_text'], reveal))}  \n"
                       f"accuracy +{p['influence_accuracy']:.3f} (se {p['influence_accuracy_se']:.3f}), "
                       f"log-likelihood {p['influence_log_likelihood']:+.3f} bits/unit")
    with st.expander("All examples"):
        download_table(mem.assign(text=[redact_text(t, reveal) for t in mem["text"]]), "memorization",
                       key="lt_csv")
    example_view(view, folder, reveal)


def _plain(text: str) -> str:
    """Text shown as itself in markdown (no formatting from the corpus)."""
    import re
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~])", r"\\\1", text)


def example_view(view: dict, folder: Path, reveal: bool) -> None:
    pool, mem, metric = view["pool"], view["mem"], view["metric"]
    st.subheader("What the IN models know beyond the OUT models, unit by unit")
    order = mem.sort_values(metric, ascending=False, na_position="last").index.tolist()
    pick = st.selectbox("Example", order[:50], key="w_lt_example",
                        format_func=lambda i: f"{pool.examples[i]}: {redact_text(pool.texts[i], reveal)[:90]}")
    if pick is None:
        return
    if not reveal and redact_text(pool.texts[pick]) != pool.texts[pick]:
        st.info("This example holds a secret: its units are shown only with 'Show secrets'.")
        return
    try:
        units, gains = unit_gains(folder, pool.texts[pick], pool.included[:, pick], pool.models)
    except SsvizError as e:
        st.info(message(e))
        return
    st.html(gain_chips(units, gains))
    finite = [g for g in gains if g is not None and math.isfinite(g)]
    st.caption(f"Red: the models trained with this example give the unit more probability than those trained "
               f"without it (bits, hover for each); blue: less. Total {sum(finite):+.1f} bits over "
               f"{len(finite)} predicted units.")


def verbatim_section(folder: Path | None) -> None:
    st.subheader("Verbatim extraction")
    df, meta, path = longtail.verbatim_table([f for f in (folder, demo.VERBATIM_DIR) if f is not None])
    if df is None:
        st.info("No verbatim-extraction results yet: run `python -m ssviz verbatim CORPUS --checkpoint M --out DIR` "
                "and put its verbatim.csv in the pool's folder.")
        return
    prefix = meta.get("prefix")
    st.caption(f"From `{shown(path)}`: {len(df):,} lines tested" + (f", prefix {prefix} units" if prefix else "")
               + ". A line is k-extractable when greedy decoding from its prefix reproduces its suffix exactly.")
    c1, c2 = st.columns(2)
    with c1:
        chart(rate_by_duplicates(meta), "verbatim-duplicates", key="lt_vd")
    with c2:
        if len(meta.get("by_prefix") or []) > 1:
            chart(rate_by_prefix(meta), "verbatim-prefix", key="lt_vp")
        else:
            st.info("These results hold one prefix length; run the verbatim command with `--prefixes 4,8,16,32` "
                    "for the curve against prefix length.")
    chart(extraction_probability(meta), "verbatim-sampling", key="lt_vs")


def run_section() -> None:
    st.subheader("Run a small pool")
    job: Job | None = st.session_state.get(JOB)
    running = bool(job and job.running)
    name, text = state.corpus()
    with st.form("lt_form", border=True):
        st.caption(f"Picks {demo.LIVE_ORDINARY} lines of the {name}, adds the demo's novel and duplicated lines, "
                   f"and trains each model on a random half ({demo.LIVE_CONFIG.layers}x{demo.LIVE_CONFIG.hidden} "
                   "LSTMs, a few seconds each).")
        c = st.columns(2)
        models = c[0].select_slider("Models", [4, 6, 8, 12], value=demo.LIVE_MODELS, key="w_lt_models")
        epochs = c[1].select_slider("Epochs", [2, 4, 6, 10], value=demo.LIVE_CONFIG.epochs, key="w_lt_epochs")
        go = st.form_submit_button("Run pool", type="primary", disabled=running, icon=":material/play_arrow:")
    if go:
        start_job(JOB, longtail.start_live_pool(text, name, int(models), int(epochs)))
        st.rerun()
    saved_run_outcome(JOB, " (shown above)")


def collect_finished() -> None:
    """Show a just-finished pool, once (before the folder is chosen)."""
    job = newly_finished(JOB)
    if job is not None:
        st.session_state[CHOSEN] = str(job.result["path"])


def body() -> None:
    page_header("Long tail", "Which of the examples actually in the training data did the model memorize, and why "
                "those? A pool of models, each trained on a random half of the examples: an example is memorized "
                "when the models trained with it predict it far better than those trained without it (Zhang et "
                "al.'s counterfactual memorization). Feldman's theory says rare, novel examples are the ones a "
                "model must memorize.")
    collect_finished()
    folder = choose_pool()
    c1, c2 = st.columns([3, 2])
    metric = c1.radio("Per-example metric", list(METRICS), format_func=METRICS.get, horizontal=True,
                      key="w_lt_metric")
    reveal = c2.toggle("Show secrets", key="w_lt_reveal", help="Texts holding secrets the scan finds (SSNs, cards, "
                                                              "phones, keys) show only a short tail unless on")
    if folder is not None:
        st.session_state[SHOWN] = str(folder)
        show_pool(view_of(folder, metric), folder, reveal)
    verbatim_section(folder)
    run_section()


run_page(body)
