"""Page "Unique features": does a model react to a feature that was in one training example?

Hartley and Tsaftaris's M2 (arXiv 2202.08099, 2205.10079): the bundled demo (digits, MLP, 10
seeds per regularizer setting, and the text experiment) loads at once; a small image run goes on
the spot as the app's background job (progress, Stop). Every number comes from
:mod:`ssviz.unique_features`.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import streamlit as st

from ssviz.paths import claim_unique, data_path
from ssviz.plots.unique_features import control_histogram, image_pairs, insertions_figure, regularizers, seed_spread
from ssviz.unique_features import demo
from ssviz.unique_features.run import load
from ui.jobs import Job
from ui.widgets import chart, download_table, newly_finished, page_header, run_page, saved_run_outcome, start_job

JOB = "ssviz_uf_job"
CHOSEN = "ssviz_uf_source"
LIVE = "the run you started"


@st.cache_data(show_spinner=False)
def examples(seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """A digit without and with the UF, an OOD patch clean, with the UF and with a random pattern."""
    from ssviz.unique_features.images import (feature_place, insert, load_data, random_patterns_any, uf_pattern)
    data = load_data("digits", ood=8)
    place = feature_place(data.shape, data.x_train)
    uf = uf_pattern(place)
    digit, ood = data.x_train[:1], data.ood[:1]
    r = random_patterns_any(1, place, np.random.default_rng(seed))
    return [("training digit", digit[0]), ("with the UF", insert(digit, uf, place)[0]),
            ("OOD input x", ood[0]), ("x + UF", insert(ood, uf, place)[0]), ("x + random r", insert(ood, r, place)[0])]


@st.cache_data(show_spinner=False)
def context_example(name: str) -> tuple[str, str] | None:
    """The first held-out demo context, as read without and with ``name`` inserted at its middle."""
    from ssviz.unique_features.text import shipped_contexts, split_context
    contexts, _ = shipped_contexts(1)
    if not contexts:
        return None
    head, tail = split_context(contexts[0])
    return head + " ".join(tail), head + name + " " + " ".join(tail)


@st.cache_data(show_spinner=False)
def bundled() -> dict[str, dict]:
    return demo.bundled_runs()


def show_run(label: str, doc: dict) -> None:
    results = doc["results"]
    s = doc["summary"]
    c = st.columns(4)
    c[0].metric("Seeds", s["seeds"])
    c[1].metric("UF ranked first", f"{s['uf_top']} of {s['seeds']}",
                help="Seeds where the unique feature's M2 is above every control's")
    c[2].metric("Median rank of the UF", f"{s['rank_median']:g} of {s['controls_per_seed'] + 1}",
                help="1 = highest; a feature that means nothing to the model ranks in the middle on average")
    c[3].metric("Mean M2 of the UF", f"{s['m2_mean']:.4f}")
    seeds = [r["seed"] for r in results]
    pick = st.selectbox("Seed", seeds, key="w_uf_seed")
    r = next(x for x in results if x["seed"] == pick)
    c1, c2 = st.columns(2)
    with c1:
        st.subheader("The unique feature among its controls")
        chart(control_histogram(r["controls"], r["m2"]), f"uf-controls-{pick}", key="uf_hist")
        ci = r.get("m2_ci")
        st.caption(f"Seed {pick}: M2 {r['m2']:.4f}" + (f" (95% bootstrap over inputs: {ci[0]:.4f} to {ci[1]:.4f})"
                                                       if ci else "")
                   + f", rank {r['rank']} of {len(r['controls']) + 1}"
                   + (f"; class-probability test p = {r['p_value']:.2g}" if r.get("p_value") is not None else ""))
    with c2:
        st.subheader("Spread over training seeds")
        chart(seed_spread(results), "uf-seeds", key="uf_seeds")
    with st.expander("Numbers per seed"):
        table = pd.DataFrame([{"seed": x["seed"], "M2": x["m2"], "rank": x["rank"],
                               "controls' median": float(np.median(x["controls"])),
                               "p (class test)": x.get("p_value")} for x in results])
        st.dataframe(table.round(5), hide_index=True)
        download_table(table, f"unique-features-{label}", key="uf_csv")


def start_run(arch: str, insertions: int, seeds: int, controls: int, epochs: int, regularizer: str) -> Job:
    from ssviz.unique_features.images import ImageSettings
    from ssviz.unique_features.run import run_images
    extra = {"none": {"early_stopping": False}, "early stopping": {}, "weight decay": {"weight_decay": 1e-3},
             "dropout": {"dropout": 0.5}, "batch norm": {"batch_norm": True}}[regularizer]
    settings = replace(ImageSettings(arch=arch, insertions=insertions, controls=controls, epochs=epochs),
                       **extra).validate()
    data_path("unique_features").mkdir(parents=True, exist_ok=True)
    out = claim_unique(data_path("unique_features"), f"image-{arch}", directory=True)

    def run(progress, stop) -> dict:
        run_images(settings, list(range(seeds)), out, progress=progress, stop=stop)
        return {"path": out}

    return Job(("uf", out.name), f"Training {seeds} {arch.upper()} classifier(s) ({regularizer})", run)


def run_section() -> None:
    st.subheader("Run on the spot")
    job: Job | None = st.session_state.get(JOB)
    running = bool(job and job.running)
    with st.form("uf_form", border=True):
        st.caption("Trains small classifiers on the bundled digits with the UF in one training image (Adam 3e-4, "
                   "batch 128) and measures M2 against random control patterns, one seed after another.")
        c = st.columns(6)
        arch = c[0].selectbox("Classifier", ["mlp", "cnn"], key="w_uf_arch")
        regularizer = c[1].selectbox("Regularizer", ["early stopping", "none", "weight decay", "dropout",
                                                     "batch norm"], key="w_uf_reg")
        insertions = c[2].number_input("Insertions", 0, 50, 1, key="w_uf_ins")
        seeds = c[3].number_input("Seeds", 1, 10, 3, key="w_uf_seeds")
        controls = c[4].number_input("Controls", 5, 200, 50, key="w_uf_controls")
        epochs = c[5].number_input("Epochs (most)", 1, 1000, 200, key="w_uf_epochs")
        go = st.form_submit_button("Run", type="primary", disabled=running, icon=":material/play_arrow:")
    if go:
        start_job(JOB, start_run(arch, int(insertions), int(seeds), int(controls), int(epochs), regularizer))
        st.rerun()
    saved_run_outcome(JOB)


def body() -> None:
    page_header("Unique features", "A canary is a whole secret sentence; the risk met more often is a single feature "
                "that occurred once, such as a name burned into one scan. Hartley and Tsaftaris's M2 asks whether a "
                "model reacts to that feature more than to random features of its shape: over out-of-distribution "
                "inputs, the mean KL divergence between the outputs without and with the feature, minus the same "
                "with a fresh random pattern. Controls (features never in training) give the reference, as random "
                "fillers do for exposure.")
    chart(image_pairs(examples()), "uf-images", key="uf_images")
    runs = dict(bundled())
    job: Job | None = st.session_state.get(JOB)
    if newly_finished(JOB) is not None:  # a run just finished: show it, once
        st.session_state[CHOSEN] = LIVE
    if job is not None and not job.running and job.result is not None:
        runs[LIVE] = load(job.result["path"])
    if not runs:
        st.info("No bundled demo here: run one below.")
    else:
        options = list(runs)
        st.session_state.setdefault(CHOSEN, LIVE if LIVE in runs else options[0])
        if st.session_state[CHOSEN] not in options:
            st.session_state[CHOSEN] = options[0]
        label = st.selectbox("Experiment (digits, MLP unless you ran another)", options, key=CHOSEN)
        show_run(label, runs[label])
        side = {k: v["results"] for k, v in runs.items() if k != LIVE}
        if len(side) > 1:
            st.subheader("Regularizers side by side")
            chart(regularizers(side), "uf-regularizers", key="uf_regs")
            st.caption("Each red point is one seed's UF; the boxes pool every seed's controls. A regularizer that "
                       "prevented memorization would put the red points inside the boxes.")
    text = demo.text_experiment()
    if text:
        st.subheader("Text: a name in the training text, once and more often")
        st.caption(f"Character LSTMs trained on {text['chars'] // 1000} KB of the demo corpus with "
                   f"`{text['template'].replace('{[A-Z]:1}{a:6}', text['name'])}` inserted; the name's M2 over "
                   f"{text['contexts']} held-out contexts against {text['controls']} random names of its shape, "
                   "beside its exposure as a canary.")
        example = context_example(text["name"])
        if example:
            st.markdown(f"A held-out context without and with the name (the distributions are compared at the "
                        f"start of each of the next words):\n\n`{example[0]}`\n\n`{example[1]}`")
        chart(insertions_figure(text["rows"]), "uf-text", key="uf_text")
        st.dataframe(pd.DataFrame([{"insertions": r["insertions"], "M2": r["m2"], "rank": r["rank"],
                                    "p (vs controls)": r["control_p_value"], "exposure (bits)": r["exposure"]}
                                   for r in text["rows"]]).round(4), hide_index=True)
    run_section()


run_page(body)
