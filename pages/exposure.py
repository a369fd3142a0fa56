"""Page 3, Exposure: where the secret falls among all fillers of its template, and what that means."""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from ssviz import exposure
from ssviz.errors import SsvizError
from ssviz.plots.exposure import exposure_bars, exposure_histogram, plain_reading
from ssviz.plots.tokens import cost_strip, secret_units
from ssviz.scoring import EXHAUSTIVE_LIMIT, human_seconds, score_fillers
from ssviz.templates import Template
from ui import cache, state
from ui.widgets import QUICK_WAIT_FACTORS, analysis_header, cached_job, chart, download_table, message, run_page

METHODS = {"auto": "auto (exact when it fits a minute here, else skew-normal, checked)", "exact": "exact (enumerate every filler)",
           "sampled": "sampled (rank among random fillers)", "skewnorm": "skew-normal extrapolation",
           "search": "search (exact rank by shortest-path enumeration)"}


def settings(template: Template) -> dict:
    c1, c2, c3 = st.columns([3, 2, 1])
    method = c1.selectbox("Method", list(METHODS), format_func=METHODS.get, **state.setting("w_exp_method", "auto"))
    samples = c2.select_slider("Random fillers (sampled methods)", [100, 200, 500, 1_000, 2_000, 5_000, 10_000,
                                                                    20_000, 50_000, 100_000],
                               disabled=method in ("exact", "search") or (
                                   method == "auto" and template.space_size <= EXHAUSTIVE_LIMIT),
                               **state.setting("w_exp_samples", 10_000))
    seed = c3.number_input("Seed", 0, 10_000, **state.setting("w_exp_seed", 0))
    if method == "exact" and template.space_size > EXHAUSTIVE_LIMIT:
        st.warning(f"|R| = {template.space_size:,} is beyond the exact limit ({EXHAUSTIVE_LIMIT:,}): "
                   "use sampled, skew-normal or search.")
    return {"method": method, "samples": int(samples), "seed": int(seed)}


JOB = "ssviz_exposure_job"
# exact exposure over the demo's 10^6 fillers takes about a second on 2 cores: waiting up to 3 s (3 x QUICK_WAIT)
# draws the result in the click's own page run (no progress panel, no half-second poll, no second full run)
QUICK_WAIT_FACTORS[JOB] = 3.0


def measure_key(current: state.CurrentModel, template: Template, secret: str, opts: dict) -> tuple:
    return ("exposure", current.key, template.text, secret, opts["method"], opts["samples"], opts["seed"])


def measure(current: state.CurrentModel, template: Template, secret: str, opts: dict, *,
            start: bool) -> exposure.ExposureResult | None:
    """The library's measurement, cached per session by its inputs, run as a background job (``start``:
    the button was pressed). None while running, stopped, failed or not asked for."""
    def run(progress, stop):
        return exposure.measure(current.model, template, secret, opts["method"], samples=opts["samples"],
                                seed=opts["seed"], max_nodes=200_000, progress=progress, stop=stop)

    return cached_job(JOB, measure_key(current, template, secret, opts), "Scoring fillers...", run, start=start,
                      again="Press **Measure exposure** to run again.")


def show_result(res: exposure.ExposureResult, template: Template, secret: str) -> None:
    c = st.columns(5)
    c[0].metric("Exposure", f"{res.exposure:.2f} bits",
                help="log2|R| - log2(rank): 0 = typical filler, log2|R| = the model's top choice")
    c[1].metric("95% CI", f"{res.ci[0]:.2f} – {res.ci[1]:.2f}" if res.ci else "exact" if res.rank else "–")
    c[2].metric(f"Rank of {res.space_size:,}", f"{res.rank:,}" if res.rank else
                f"≥ {res.rank_lower_bound:,}" if res.rank_lower_bound else "–",
                help="Fillers at least as likely as the secret (exact methods only)")
    c[3].metric("Log-perplexity", f"{res.log_perplexity:.2f} bits")
    c[4].metric("KS p-value", f"{res.ks_pvalue:.3f}" if res.ks_pvalue is not None else "–",
                help="Kolmogorov-Smirnov test of the skew-normal fit: small values mean extrapolation is "
                     "less trustworthy")
    if res.warning:
        st.warning(res.warning[0].upper() + res.warning[1:] + ".")
    st.info(plain_reading(res.exposure, res.rank, res.space_size))
    st.caption(f"{res.quality()}. " + (f"Auto chose {res.plan['method']}: {res.plan['reason']}. " if res.plan else "")
               + f"Maximum possible exposure for this template: {math.log2(res.space_size):.2f} bits.")


def secret_costs(current: state.CurrentModel, template: Template, secret: str) -> None:
    """The cost strip: what the model pays for each token (or character) of the secret's text, so a presenter
    can point at where it starts to 'know' the secret."""
    from ssviz.report import char_costs
    text = template.format(secret)
    units = char_costs(current.model, text)  # every character, or every token of a transformer
    unit = current.model.unit_name
    marks = secret_units([u for u, _ in units], text, template)
    paid = sum(units[i][1] for i in marks if units[i][1] is not None)
    st.subheader(f"{unit.capitalize()} by {unit}")
    st.caption(f"The model pays {paid:.1f} bits for the secret's {len(marks)} {unit}s (red); a random guess would "
               f"pay {sum(marks.values()):.1f} (the dashes). A red bar far below its dash is where the model "
               "knows the secret.")
    chart(cost_strip(units, marks, unit=unit, title=f"Cost of each {unit} of “{text}”"), f"{unit}-costs",
          key="exp_strip")


def other_fillers(template: Template) -> list[str]:
    """The fillers typed for comparison (the control by default), normalized; bad ones get a warning."""
    typed = st.text_input("Other fillers to compare (comma separated)", ", ".join(state.get(state.EXTRA_SECRETS)),
                          key="w_exp_others")
    others = []
    for raw in [t.strip() for t in typed.split(",") if t.strip()]:
        try:
            others.append(template.normalize(raw))
        except SsvizError as e:
            st.warning(message(e))
    state.put(state.EXTRA_SECRETS, others)
    return others


def comparison(rows: list[dict], template: Template) -> None:
    st.subheader("Compare secrets")
    st.caption("Other fillers measured against the same reference fillers: the inserted canary should stand "
               "out; a control that was never inserted should look like chance.")
    df = pd.DataFrame([{k: v for k, v in r.items() if k != "ci"} for r in rows])
    chart(exposure_bars(rows, math.log2(template.space_size)), "exposure-comparison", key="exp_bars")
    st.dataframe(df.round(3), hide_index=True)
    download_table(df, "exposure-comparison")


def secret_rows(current, template: Template, fillers: list[str], res: exposure.ExposureResult) -> list[dict]:
    """Each filler's exposure by the same estimator as ``res`` over the same references (the secret's own
    row is ``res`` itself, so the numbers agree with the headline)."""
    lps = score_fillers(current.model, template, fillers)
    rows = []
    for filler, lp, measured in zip(fillers, lps, exposure.exposure_of(res, lps)):
        row = {"label": filler, "text": template.format(filler), "log_perplexity": float(lp)}
        if filler == fillers[0]:
            row.update(exposure=res.exposure, rank=res.rank, ci=res.ci)
        else:
            row.update(measured)
        rows.append(row)
    return rows


def before_the_work(current: state.CurrentModel, template: Template, opts: dict) -> None:
    """What pressing the button will do and about how long it takes, known before it starts (the rate is
    measured once per model and template, a quarter of a second)."""
    method = opts["method"]
    if method not in ("auto", "exact"):
        line = (f"Scores {opts['samples']:,} random fillers." if method in ("sampled", "skewnorm") else
                "Enumerates fillers from the most likely until the secret's rank is certain (up to 200,000 nodes): "
                "quick for a memorized secret, slow for one deep in the crowd.")
        st.caption(f"Before you press: {line}")
        return
    key = ("plan", current.key, template.text)
    plan = cache.result(key)
    if plan is None:
        try:
            plan = exposure.plan(current.model, template)
        except SsvizError:
            return  # the measurement itself says what is wrong
        cache.remember(key, plan)
    if method == "auto":
        st.caption(f"Before you press: auto will use {plan.method}, because {plan.reason}.")
    elif plan.exact_seconds is not None:
        st.caption(f"Before you press: enumerating |R| = {template.space_size:,} takes about "
                   f"{human_seconds(plan.exact_seconds)} here.")


def body() -> None:
    current, template, secret = analysis_header(
        "Exposure", "Score the secret and many other fillers of its template with the model. The further left of the "
                   "crowd the secret lies, the more the model has memorized it.")
    opts = settings(template)
    before_the_work(current, template, opts)
    run = st.button("Measure exposure", type="primary", icon=":material/play_arrow:", key="exp_run")
    res = measure(current, template, secret, opts, start=run)
    if res is None:
        job = st.session_state.get(JOB)
        if job is None:
            st.info(f"Press **Measure exposure** to score `{template.format(secret)}` "
                    f"(|R| = {template.space_size:,}).")
        return
    show_result(res, template, secret)
    secret_costs(current, template, secret)
    others = other_fillers(template)
    rows = secret_rows(current, template, list(dict.fromkeys([secret, *others])), res)
    st.subheader("Where the secret falls")
    if res.reference_lps is None:
        st.info("The search method enumerates fillers from the most likely and keeps no histogram; "
                "pick exact or sampled to see the distribution.")
    else:
        fig = exposure_histogram(res.reference_lps, {r["label"]: r["log_perplexity"] for r in rows}, res.skewnorm,
                                 histogram=res.histogram, title=f"{len(res.reference_lps):,} fillers of “{template.text}”")
        chart(fig, "exposure-histogram", key="exp_hist")
    comparison(rows, template)


run_page(body)
