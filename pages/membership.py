"""Page "Membership": the field's membership attacks on member and non-member texts, with the blind
baseline beside them, so a result that only measures a distribution shift says so.

The bundled result (the demo transformer, its training lines against held-out lines) loads at once;
a run on the loaded model (the bundled sets or two uploaded files) goes through the app's job runner
(progress, Stop). Every number comes from :mod:`ssviz.membership`.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ssviz.demo import DEMO_TRANSFORMER
from ssviz.membership.attacks import ATTACKS, DEFAULT_K
from ssviz.membership.blind import SHIFT_RULE, best_attack, shift_message
from ssviz.membership.run import metrics_rows, text_view
from ssviz.messages import clip
from ssviz.plots.membership import attack_rocs, unit_heat
from ui import cache, state
from ui import membership as ui_mia
from ui.widgets import chart, download_table, job_panel, model_banner, page_header, run_page, shown, start_job

JOB = "ssviz_mia_job"
SHOWN = "ssviz_mia_shown"  # folder of the result drawn last (the Report page includes it)
SOURCES = {"demo": "Bundled result: demo transformer, training lines vs held-out lines",
           "run": "Run on the loaded model"}
SETS = {"demo": "the bundled member and non-member lines", "upload": "two files I upload (one text per line)"}
TEXT_ATTACKS = [n for n, a in ATTACKS.items() if a.needs in ("", "lower")]


def show_result(res, model, where: str) -> None:
    doc = res.to_json()
    best, best_auc = best_attack(doc["attacks"])
    st.caption(f"{where}: {doc['members']:,} members, {doc['nonmembers']:,} non-members; Min-K% k = "
               f"{res.settings.get('k', DEFAULT_K):g}" + (f"; {len(res.skipped)} text(s) too short to score"
                                                          if res.skipped else ""))
    (st.warning if res.shift_warning else st.info)(shift_message(doc["blind"], doc["attacks"]))
    c = st.columns(4)
    blind = doc["blind"]
    c[0].metric("Best attack AUC", "–" if best_auc is None else f"{best_auc:.3f}",
                help=f"{ATTACKS[best].title if best in ATTACKS else best}: the probability a member outscores a "
                     "non-member (0.5 = chance)")
    c[1].metric("Best attack TPR at 1% FPR", f"{doc['attacks'][best]['tpr_at_fpr']['0.01']:.3f}" if best else "–")
    c[2].metric("Blind baseline AUC", f"{blind['auc']:.3f}",
                help="A classifier that reads only the texts (n-grams and length), never the model; "
                     f"cross-validated. The page warns when {SHIFT_RULE}.")
    c[3].metric("Blind baseline TPR at 1% FPR", f"{blind['tpr_at_fpr']['0.01']:.3f}")
    c1, c2 = st.columns([3, 2])
    with c1:
        st.subheader("ROC (log-log)")
        chart(attack_rocs(*res.rocs()), "membership-roc", key="mia_roc")
    with c2:
        st.subheader("Attacks and the blind baseline")
        table = pd.DataFrame(metrics_rows(doc))
        st.dataframe(table[["attack", "AUC", "AUC 95% interval", "TPR at 1% FPR", "TPR at 1% 95% interval"]]
                     .round(3), hide_index=True)
        st.caption("Intervals: AUC by bootstrap (members and non-members resampled separately), TPR by "
                   "Clopper-Pearson; TPR at an FPR is the best real threshold within it (no interpolation). "
                   "Higher score = more likely a member, for every attack.")
        with st.expander("All numbers"):
            st.dataframe(table.round(4), hide_index=True)
            download_table(res.table(), "membership-scores", key="mia_csv")
    per_text(res, model)


def per_text(res, model) -> None:
    st.subheader("One text, unit by unit")
    if not any(res.texts):
        st.info("This result was saved without its texts (texts.csv).")
        return
    order = list(range(len(res.texts)))
    row = st.selectbox("Text", order, key="w_mia_text", format_func=lambda j: (
        f"{'member' if res.member[j] else 'non-member'}, line {int(res.index[j])}: {clip(res.texts[j], 90)}"))
    ranks = res.ranks(row)
    n = len(res.texts)
    st.dataframe(pd.DataFrame([{"attack": ATTACKS[a].title if a in ATTACKS else a, "score": res.scores[a][row],
                                "rank (1 = most member-like)": ranks[a], "of": n} for a in res.scores]),
                 hide_index=True)
    if model is None:
        st.info("Load the model this result was measured on to see its units.")
        return
    view = text_view(model, res.texts[row])
    chart(unit_heat(view["units"], view["logp"], view["z"]), "membership-units", key="mia_units")
    st.caption("Top row: each unit's log-probability (the first unit is context); Min-K% averages the lowest "
               f"{res.settings.get('k', DEFAULT_K):.0%} of them. Bottom row: Min-K%++'s z, how far below the "
               "model's own expectation each unit sits; Min-K%++ averages the lowest of those.")


def run_section():
    """The form for a run on the loaded model; returns ``(result, model)`` of this session's finished run."""
    current = model_banner()
    job = st.session_state.get(JOB)
    with st.form("mia_form", border=True):
        sets = st.radio("Texts", list(SETS), format_func=SETS.get, horizontal=True, key="w_mia_sets")
        c = st.columns(2)
        up_in = c[0].file_uploader("Members (one text per line)", type=["txt"], key="w_mia_members")
        up_out = c[1].file_uploader("Non-members (one text per line)", type=["txt"], key="w_mia_nonmembers")
        c = st.columns(4)
        attacks = c[0].multiselect("Attacks", TEXT_ATTACKS, default=TEXT_ATTACKS, key="w_mia_attacks",
                                   format_func=lambda n: ATTACKS[n].title)
        others = {k: v["name"] for k, v in state.models().items() if k != current.key}
        ref = c[1].selectbox("Reference model (ref attack)", ["none", *others], key="w_mia_ref",
                             format_func=lambda k: "none" if k == "none" else clip(others[k], 40),
                             help="A model of the same kind of text that never saw the members")
        k = c[2].slider("k (Min-K%)", 0.05, 1.0, DEFAULT_K, 0.05, key="w_mia_k")
        limit = c[3].number_input("Texts per side (at most)", 4, ui_mia.MAX_LIVE_TEXTS, 200, key="w_mia_limit")
        go = st.form_submit_button("Run attacks", type="primary", icon=":material/play_arrow:",
                                   disabled=bool(job and job.running))
    if go:
        members, nonmembers = (ui_mia.demo_sets() if sets == "demo" else
                               ui_mia.uploaded_sets(up_in.getvalue(), up_out.getvalue()) if up_in and up_out
                               else (None, None))
        if members is None:
            st.info("Choose both files, or the bundled lines.")
        else:
            names = list(attacks) + (["ref"] if ref != "none" else [])
            reference = _model_of(ref) if ref != "none" else None
            job = start_job(JOB, ui_mia.membership_job(("mia", current.key, sets, tuple(names), k, int(limit)),
                                                       f"Membership attacks on {clip(current.name, 40)}",
                                                       current.model, members, nonmembers, attacks=names,
                                                       k=float(k), reference=reference, limit=int(limit)))
            job.meta["model_key"] = current.key
    if job is None:
        return None, None
    if job.running:
        job_panel(JOB)
        return None, None
    if job.error:
        (st.warning if job.stopped else st.error)(f"{job.label}: {'stopped: ' if job.stopped else ''}{job.error}")
        return None, None
    model = current.model if job.meta.get("model_key") == current.key else None
    st.session_state[SHOWN] = str(job.result["path"])
    st.caption(f"Saved in `{shown(job.result['path'])}` (the Report page can include it).")
    return job.result["result"], model


def _model_of(key: str):
    entry = state.models()[key]
    if key.startswith("upload:"):
        return cache.uploaded_model(key.split(":", 1)[1])
    return cache.model_from_file(entry["source"])


def body() -> None:
    page_header("Membership", "Was this text in the training data? Membership attacks score every text by how the "
                "model reads it (its loss, its least likely units, how far below the model's own expectation "
                "they sit, a reference model). Many published membership results only measured a difference "
                "between the member and non-member texts themselves: a blind baseline that never sees the model "
                "stands beside every result, and the page says when it does as well as the attacks.")
    source = st.radio("Result", list(SOURCES), format_func=SOURCES.get, horizontal=True,
                      **state.setting("w_mia_source", "demo"))
    if source == "demo":
        res = ui_mia.demo_result()
        if res is None:
            st.info("The bundled result is not shipped with this copy: run the attacks on the loaded model.")
            return
        model = cache.model_from_file(DEMO_TRANSFORMER) if (DEMO_TRANSFORMER / "config.json").is_file() else None
        st.session_state[SHOWN] = str(ui_mia.DEMO_DIR)
        show_result(res, model, res.settings.get("description") or "bundled result")
        return
    res, model = run_section()
    if res is not None:
        show_result(res, model, "this run")


run_page(body)
