"""Page 5, Per-user comparison: exposure of the secrets found in each user's mail (the paper's Table 5)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from ssviz.errors import SsvizError
from ssviz.plots.study import exposure_by_secret, exposure_scatter
from ssviz.store import BUNDLED_STUDY, DEFAULT_DB
from ui import cache
from ui.widgets import chart, download_table, run_page, shown



def choose_store() -> Path | None:
    """The results file to show: a bundled one, a .duckdb under data/ or models/, or an uploaded one (None: an
    error was shown)."""
    choices = [p for p in (DEFAULT_DB, BUNDLED_STUDY) if p.is_file()]
    labels = {DEFAULT_DB: "your results", BUNDLED_STUDY: "bundled demo study"}
    c1, c2 = st.columns([3, 2])
    options = [*choices, "other", "upload"]
    pick = c1.selectbox("Results", options, key="w_cmp_store",
                        format_func=lambda p: {"other": "another DuckDB file under data/ or models/...",
                                               "upload": "upload a DuckDB file..."}.get(p)
                        or f"{labels.get(p, '')} ({shown(p)})")
    if pick == "other":
        typed = c2.text_input("Path to a results .duckdb file (under data/ or models/)", key="w_cmp_path")
        if not typed:
            return DEFAULT_DB
        try:
            return cache.results_file(typed)
        except SsvizError as e:
            st.error(str(e))
            return None
    if pick == "upload":
        upload = c2.file_uploader("Results .duckdb file", type=["duckdb"], key="w_cmp_upload",
                                  help="Kept in a private temporary folder and opened with file access and "
                                       "extensions off; only an ssviz results store is accepted.")
        if upload is None:
            st.info("Choose a .duckdb results file to upload.")
            return None
        return cache.uploaded_results_file(upload.getvalue())
    return pick


def filters(df):
    c1, c2, c3 = st.columns(3)
    users = c1.multiselect("Users", sorted(df["user"].unique()), key="w_cmp_users", placeholder="all users")
    types = c2.multiselect("Secret types", sorted(df["type"].unique()), key="w_cmp_types", placeholder="all types")
    extracted = c3.radio("Extraction", ["all", "extracted", "not extracted"], horizontal=True, key="w_cmp_ext")
    if users:
        df = df[df["user"].isin(users)]
    if types:
        df = df[df["type"].isin(types)]
    if extracted != "all":
        df = df[df["extracted"] == (extracted == "extracted")]
    return df


def body() -> None:
    st.title("Per-user comparison")
    st.write("One model per user, trained on that user's mail; each secret found in it (SSNs, card numbers) "
             "measured for exposure and attacked by extraction. Secrets are stored only as salted hashes and "
             "last 4 digits, and shown by their last few digits only.")
    path = choose_store()
    if path is None:
        return
    from ssviz.redaction import redact_tails
    df = redact_tails(cache.store(str(path)).comparison())  # at most a third of each secret shown
    if df.empty:
        st.info(f"No per-user results in `{shown(path)}` yet. Run the study with `python -m ssviz enron ...` "
                "(it writes data/results.duckdb), or pick the bundled demo study.")
        return
    df = filters(df)
    if df.empty:
        st.info("No secrets match these filters.")
        return
    c = st.columns(4)
    c[0].metric("Users", df["user"].nunique())
    c[1].metric("Secrets", len(df))
    c[2].metric("Extracted", f"{int(df['extracted'].sum())} of {len(df)}")
    c[3].metric("Median exposure", f"{df['exposure'].median():.1f} bits")
    st.dataframe(df.round({"exposure": 2}), hide_index=True, width="stretch")
    download_table(df, "per-user-comparison")
    chart(exposure_by_secret(df), "exposure-per-secret", key="cmp_bars")
    c1, c2 = st.columns(2)
    with c1:
        chart(exposure_scatter(df, "times_present", log_x=True), "exposure-vs-times-present", key="cmp_times")
    with c2:
        chart(exposure_scatter(df, "corpus_chars"), "exposure-vs-corpus-size", key="cmp_size")
    st.caption("What to look for: do secrets that appear more often have higher exposure? Extraction is a "
               "search with a budget, so a secret in a large space (card numbers: 10^16 fillers) needs more "
               "exposure to be found than one in a small space (SSNs: 10^9).")


run_page(body)
