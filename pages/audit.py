"""Page "Privacy audit": how much a training run leaks about any canary, as a membership ROC and an epsilon.

A finished audit (bundled, saved under data/audits, typed or uploaded) loads at
once; a small one runs on the spot as the app's background training job
(progress, Stop). All numbers come from :func:`ssviz.audit.run.load_audit`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from ssviz.audit import demo, roc_curve
from ssviz.audit.run import load_audit
from ssviz.audit.seeds import seed_folders
from ssviz.errors import SsvizError
from ssviz.messages import clip
from ssviz.paths import claim_unique
from ssviz.plots.audit import epsilon_bars, plain_reading, roc_figure, score_histograms
from ui import audits, cache, state
from ui.jobs import Job, training_job
from ui.widgets import (chart, download_table, message, newly_finished, page_header, run_page, saved_run_outcome, shown,
                        start_job)

JOB = "ssviz_audit_job"
SOURCE = "w_aud_source"          # the selectbox; its value is a folder (as text), "other" or "upload"
CHOSEN = "ssviz_aud_source"      # canonical copy, so the choice survives a visit to another page
SHOWN = "ssviz_audit_shown"      # folder of the audit drawn last (the Report page includes it)
TRAINING = {"plain": "plain training", "dp8": "DP-SGD, epsilon 8 per line", "dp1": "DP-SGD, epsilon 1 per line"}
DP_EPSILON = {"plain": None, "dp8": 8.0, "dp1": 1.0}
KINDS = {"random": "random fillers of the template", "new-token": "new units (characters the corpus never uses)",
         "bigram": "samples of a bigram model of the corpus"}
MAX_SEEDS_SHOWN = 50  # bars on the repeated-audit chart
FPR_LABELS = {"0.001": "0.1%", "0.01": "1%", "0.1": "10%"}


# --- choosing an audit --------------------------------------------------------------------------------
def choose_audit() -> Path | None:
    """The audit to show: bundled, saved in data/audits, a typed folder under data/ or models/, or an upload."""
    bundled = demo.bundled_audits()
    saved = audits.saved_audits()
    labels = {str(p): f"bundled: {label}" for p, label in bundled.items()}
    labels.update({str(p): f"saved: {shown(p)}" for p in saved})
    options = [*labels, "other", "upload"]
    st.session_state.setdefault(CHOSEN, options[0])
    if st.session_state[CHOSEN] not in options:  # e.g. a saved audit removed meanwhile
        st.session_state[CHOSEN] = options[0]
    st.session_state[SOURCE] = st.session_state[CHOSEN]
    c1, c2 = st.columns([3, 2])
    pick = c1.selectbox("Audit", options, key=SOURCE, on_change=_chosen,
                        format_func=lambda o: {"other": "another audit folder under data/ or models/...",
                                              "upload": "upload a canaries.csv (and audit.json)..."}.get(o)
                        or labels[o])
    if pick == "other":
        typed = c2.text_input("Audit folder (under data/ or models/)", key="w_aud_path",
                              help="A folder written by `python -m ssviz audit --out DIR`.")
        if not typed:
            st.info("Type the folder of a finished audit.")
            return None
        try:
            return audits.audit_folder(typed, cache.results_dirs())
        except SsvizError as e:
            st.error(message(e))
            return None
    if pick == "upload":
        files = c2.file_uploader("canaries.csv and, optionally, audit.json", type=["csv", "json"],
                                 accept_multiple_files=True, key="w_aud_upload",
                                 help="Kept in a private temporary folder; every row is checked.")
        if not files:
            st.info("Choose the canaries.csv of a finished audit (and its audit.json for the settings).")
            return None
        try:
            return audits.save_upload({f.name: f.getvalue() for f in files})
        except SsvizError as e:
            st.error(message(e))
            return None
    return Path(pick)


def _chosen() -> None:
    st.session_state[CHOSEN] = st.session_state[SOURCE]


def audit_results(folder: Path) -> dict:
    """:func:`load_audit` once per folder content in this session."""
    return cache.of_files("audit", folder, ("canaries.csv", "audit.json"), lambda: load_audit(folder))


# --- showing one --------------------------------------------------------------------------------------
def fmt_eps(value) -> str:
    return "none" if value is None else f"{value:.2f}"


def show_audit(res: dict, folder: Path) -> None:
    k = res.get("insertions")
    claimed, per_canary = res.get("epsilon_claimed"), res.get("epsilon_claimed_per_canary")
    kind = res.get("canary_kind") or "random"
    shown_template = res.get("canary_template") or res.get("template") or "?"
    st.caption(f"`{clip(shown_template, 80)}` ({KINDS.get(kind, kind)}): {res['canaries']:,} canaries, "
               f"{res['included']:,} included "
               f"(each with probability {res.get('inclusion') or 0.5:g}) and inserted {k or '?'} times; "
               f"seed {res.get('seed')}. Folder: `{shown(folder)}`.")
    c = st.columns(4)
    c[0].metric("AUC", f"{res['auc']:.3f}", help="Probability that an inserted canary outscores one that was "
                                                "not (0.5 = chance)")
    for i, (fpr, label) in enumerate(FPR_LABELS.items(), start=1):
        tpr = res["tpr_at_fpr"].get(fpr)
        c[i].metric(f"TPR at {label} FPR", "–" if tpr is None else f"{tpr:.3f}",
                    help="Share of inserted canaries caught with at most this share of false alarms")
    intervals_caption(res)
    c = st.columns(5)
    eps, fdp = res.get("epsilon_lower"), res.get("epsilon_lower_fdp")
    c[0].metric("Audited epsilon (lower bound)", "–" if eps is None else f"{eps:.2f}",
                help=f"At {res['confidence']:.0%} confidence, delta {res['delta']:g} (Steinke, Nasr and "
                     "Jagielski's one-run bound): holds for any (epsilon, delta)-DP training")
    c[1].metric("Audited epsilon, f-DP", "–" if fdp is None else f"{fdp:.2f}",
                help="Mahloujifar, Melis and Chaudhuri's one-run f-DP bound on the same guesses, same confidence "
                     "and delta: it rules out the Gaussian trade-off curve of (epsilon, delta), so it is a bound on "
                     "epsilon only if the training's privacy curve is Gaussian, as DP-SGD's accounting assumes")
    c[2].metric("Claimed epsilon per canary", fmt_eps(per_canary),
                help="The DP guarantee for a group of K lines (group privacy): what the audit is compared with")
    c[3].metric("Claimed epsilon per line", fmt_eps(claimed), help="The DP-SGD accountant's epsilon")
    c[4].metric("Loss-attack AUC", "–" if res.get("mia_auc") is None else f"{res['mia_auc']:.3f}",
                help="Classic membership attack: training lines vs held-out lines, score = minus the loss")
    if eps is None:
        st.warning(res.get("message") or "This audit has no epsilon bound (the one-run bound needs inclusion 0.5).")
    else:
        st.info(plain_reading(eps, per_canary, res["confidence"]))
        if fdp is not None:
            st.caption(f"The f-DP bound ({fdp:.2f}) tests the Gaussian privacy curve of each epsilon rather than "
                       f"the (epsilon, delta) guarantee: it is tighter, and sound only for training whose privacy "
                       "curve is Gaussian (DP-SGD's); the Steinke bound above holds for any (epsilon, delta)-DP "
                       "training.")
    if claimed is not None and k:
        st.caption(f"A canary inserted {k} times is a group of {k} training lines: DP-SGD's epsilon {claimed:.2f} "
                   f"per line covers it only at {k} x {claimed:.2f} = {per_canary:.2f} (group privacy), so the "
                   "audited bound, which is per canary, is set against that."
                   + (" Insert each canary once to audit the per-line guarantee." if k > 1 else ""))
    scores, included = res["scores"], res["included_mask"]
    c1, c2 = st.columns(2)
    with c1:
        st.subheader("Scores of inserted and other canaries")
        chart(score_histograms(scores, included), "audit-scores", key="aud_hist")
    with c2:
        st.subheader("ROC (log-log)")
        fpr, tpr, _ = roc_curve(scores, included)
        chart(roc_figure({f"canaries (AUC {res['auc']:.3f})": (fpr, tpr)}), "audit-roc", key="aud_roc")
    tprs = pd.DataFrame([{"FPR": FPR_LABELS.get(f, f), "TPR": t} for f, t in res["tpr_at_fpr"].items()])
    non_members = res["canaries"] - res["included"]
    st.caption(f"TPR at a given FPR is the best real threshold whose false-positive rate stays within it: with "
               f"{non_members:,} canaries not inserted, an FPR below {1 / max(non_members, 1):.2%} means no "
               "false alarm at all.")
    seeds = seed_folders(folder.parent)[:MAX_SEEDS_SHOWN]
    if eps is not None and seeds:
        repeated_audit(folder, seeds)
    elif eps is not None:
        st.subheader("Audited vs claimed epsilon")
        name = demo.BUNDLED.get(res.get("name")) if folder.parent == demo.BUNDLED_DIR else None
        label = f"{name or res.get('name') or 'this audit'}" + (f" (per canary: {k} lines)" if k else "")
        chart(epsilon_bars([{"label": label, "epsilon_lower": eps, "epsilon_claimed": per_canary,
                             "epsilon_lower_fdp": fdp}]),
              "audit-epsilon", key="aud_eps")
    with st.expander("Numbers and canaries"):
        st.dataframe(tprs.round(4), hide_index=True)
        download_table(pd.DataFrame({"score": scores, "included": included}),
                       f"audit-{res.get('name') or 'scores'}", key="aud_csv")


def intervals_caption(res: dict) -> None:
    """The uncertainty of the membership numbers: a bootstrap AUC interval, Clopper-Pearson TPR intervals."""
    auc_ci, tpr_ci = res.get("auc_ci"), res.get("tpr_ci") or {}
    if not auc_ci:
        return
    level = f"{res.get('confidence') or 0.95:.0%}"
    tprs = ", ".join(f"{label} [{tpr_ci[f][0]:.3f}, {tpr_ci[f][1]:.3f}]" for f, label in FPR_LABELS.items()
                     if f in tpr_ci)
    st.caption(f"{level} intervals: AUC [{auc_ci[0]:.3f}, {auc_ci[1]:.3f}] (bootstrap over canaries); TPR at "
               f"{tprs} FPR (Clopper-Pearson over the {res['included']:,} inserted canaries).")


def repeated_audit(folder: Path, seeds: list[Path]) -> None:
    """This audit is one seed of ``audit --seeds N``: every seed's bound beside its claim, this one named."""
    results = {s: audit_results(s) for s in seeds}
    bounds = [r["epsilon_lower"] for r in results.values() if r.get("epsilon_lower") is not None]
    st.subheader(f"Audited vs claimed epsilon over {len(seeds)} seeds")
    rows = [{"label": f"seed {s.name[5:]}" + (" (shown above)" if s == folder else ""),
             "epsilon_lower": r.get("epsilon_lower"), "epsilon_claimed": r.get("epsilon_claimed_per_canary"),
             "epsilon_lower_fdp": r.get("epsilon_lower_fdp")}
            for s, r in results.items() if r.get("epsilon_lower") is not None]
    chart(epsilon_bars(rows), "audit-epsilon", key="aud_eps")
    if bounds:
        st.caption(f"The same audit with other canaries, coins and training noise: bounds from {min(bounds):.2f} to "
                   f"{max(bounds):.2f}, median {float(np.median(bounds)):.2f}. Each holds at its own confidence; the "
                   "largest is not a bound at that confidence.")


# --- running one --------------------------------------------------------------------------------------
def start_audit(canaries: int, insertions: int, training: str, seed: int, kind: str = "random") -> Job:
    """Train the small live setting with audit canaries as the app's training job; saved under data/audits."""
    from dataclasses import replace
    from ssviz.audit.run import run_audit

    name, text = state.corpus()
    text = text[:audits.LIVE_CHARS]
    settings = replace(audits.LIVE_SETTINGS, canaries=canaries, insertions=insertions, seed=seed,
                       canary_kind=kind).validate()
    config = replace(audits.LIVE_CONFIG, seed=seed, dp_epsilon=DP_EPSILON[training]).validate()
    # a folder no other session can take (time plus a random part, mkdir fails if it exists)
    out = claim_unique(audits.runs_dir(), f"audit-{training}", directory=True)
    stamp = out.name

    def run(on_epoch, on_batch, stop) -> dict:
        run_audit(text, settings, config, out_dir=out, on_epoch=on_epoch, on_batch=on_batch, stop=stop)
        return {"path": out}

    return training_job(("audit", stamp), f"Auditing {TRAINING[training]} on the {name}", run, config.epochs,
                        {"folder": out})


def run_section() -> None:
    st.subheader("Run an audit")
    job: Job | None = st.session_state.get(JOB)
    running = bool(job and job.running)
    s, cfg = audits.LIVE_SETTINGS, audits.LIVE_CONFIG
    name, _ = state.corpus()
    with st.form("aud_form", border=True):
        st.caption(f"Draws canaries from `{s.template}` (random fillers, new units or bigram samples: the last "
                   "choice below), includes each with probability 1/2, "
                   f"inserts the included ones into the first {audits.LIVE_CHARS // 1000} KB of the {name}, trains a "
                   f"{cfg.layers}x{cfg.hidden} LSTM for {cfg.epochs} epochs and scores every canary "
                   "(DP-SGD is several times slower).")
        c = st.columns(5)
        canaries = c[0].select_slider("Canaries", sorted({100, 200, 500, s.canaries}), value=s.canaries,
                                      key="w_aud_canaries")
        insertions = c[1].select_slider("Insertions", sorted({1, 2, 4, 8, s.insertions}), value=s.insertions,
                                        key="w_aud_insertions", help="A canary inserted K times is a group of K "
                                                                     "lines for DP")
        training = c[2].selectbox("Training", list(TRAINING), format_func=TRAINING.get, key="w_aud_training")
        seed = c[3].number_input("Seed", 0, 10_000, s.seed, key="w_aud_seed")
        kind = c[4].selectbox("Canaries", list(KINDS), format_func=KINDS.get, key="w_aud_kind",
                              help="What the canaries are made of (docs/audit.md): new units are the strongest "
                                   "test; bigram samples look like the data")
        go = st.form_submit_button("Run audit", type="primary", disabled=running, icon=":material/play_arrow:")
    if go:
        start_job(JOB, start_audit(int(canaries), int(insertions), training, int(seed), kind))
        st.rerun()
    saved_run_outcome(JOB, " (shown above)")


def collect_finished() -> None:
    """Show a just-finished run's audit, once (before the selectbox is drawn)."""
    job = newly_finished(JOB)
    if job is not None:
        st.session_state[CHOSEN] = str(job.result["path"])


def body() -> None:
    page_header("Privacy audit", "Exposure says how memorized one canary is. An audit asks how much a training run "
                "leaks about any canary: hundreds of random canaries, each inserted or not by a coin flip, one "
                "model, and a membership test on every canary. Its hit rate gives a lower bound on epsilon that "
                "can be set beside the epsilon DP-SGD claims.")
    collect_finished()
    folder = choose_audit()
    if folder is not None:
        res = audit_results(folder)
        st.session_state[SHOWN] = str(folder)
        show_audit(res, folder)
    run_section()


run_page(body)
