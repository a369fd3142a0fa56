"""Page "Report": one standalone HTML file of what this session measured, for people who were not there.

The file is the one ``python -m ssviz report`` writes (:mod:`ssviz.report` renders
both): the current model, template and secret, with the exposure and extraction
results already measured on their pages, and what is missing measured here as the
app's background job (progress, Stop). Secrets are redacted unless revealed.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import streamlit as st

from ssviz.errors import SsvizError
from ssviz.redaction import redact
from ssviz.store import BUNDLED_STUDY, DEFAULT_DB
from ui import cache, state
from ui.widgets import analysis_header, cached_job, message, run_page, shown, slug

JOB = "ssviz_report_job"
HTML = "ssviz_report_html"       # {"key", "html", "name"}: the last file built (one per session)
AUDIT_SHOWN = "ssviz_audit_shown"  # set by the Privacy audit page
DEFENSE_RUNS = "def_results"       # defenses trained on the Defenses page in this session
EXACT_SEARCHES = ("dijkstra", "brute")  # searches whose "found" is certified: the only ones a verdict may use
DEFAULTS = {"method": "auto", "samples": 10_000, "seed": 0, "max_nodes": 100_000}  # python -m ssviz report's


def latest(prefix: tuple, accept=lambda key, value: True):
    """The most recently used result of this session whose cache key starts with ``prefix`` (key, value)."""
    for key, value in reversed(list(st.session_state.get(cache.RESULTS, {}).items())):
        if key[:len(prefix)] == prefix and accept(key, value):
            return key, value
    return None, None


def measured(current, template, secret) -> dict:
    """What the session already has for this model, template and secret, and the settings for the rest."""
    exp_key, exp = latest(("exposure", current.key, template.text, secret))
    ext_key, ext = latest(("extraction", current.key, template.text),
                          lambda k, v: dict(k[3]).get("algorithm") in EXACT_SEARCHES)
    method = st.session_state.get("ssviz_exp_method", DEFAULTS["method"])
    return {"exposure": exp, "extraction": ext, "exposure_key": exp_key, "extraction_key": ext_key,
            "method": method if method in ("auto", "exact", "sampled", "skewnorm") else DEFAULTS["method"],
            "samples": int(st.session_state.get("ssviz_exp_samples", DEFAULTS["samples"])),
            "seed": int(st.session_state.get("ssviz_exp_seed", DEFAULTS["seed"])),
            "max_nodes": int(st.session_state.get("ssviz_ext_nodes", DEFAULTS["max_nodes"]))}


def findings_job(current, template, secret, have: dict):
    """The report's findings: cached results reused, the rest measured in a background job."""
    def run(progress, stop):
        from ssviz.report import measure

        if have["extraction"] is None:  # the same search python -m ssviz report runs
            progress(0, 0, "searching for the most likely filler")
        return measure(current.model, template, [secret], method=have["method"], samples=have["samples"],
                       seed=have["seed"], max_nodes=have["max_nodes"], extraction=have["extraction"],
                       exposures={secret: have["exposure"]} if have["exposure"] is not None else None,
                       progress=progress, stop=stop)

    key = ("report", current.key, template.text, secret, have["exposure_key"] or
           (have["method"], have["samples"], have["seed"]), have["extraction_key"] or have["max_nodes"])
    return key, run


def inputs_section(current, template, secret, have: dict) -> dict:
    """What goes into the report (shown before building), and the optional sections."""
    st.subheader("What goes in")
    exp, ext = have["exposure"], have["extraction"]
    st.markdown(
        f"- **Model**: {current.name}\n"
        f"- **Secret**: `{template.text}` with the secret under test (shown as `{redact(secret)}` unless revealed)\n"
        "- **Exposure**: " + (f"measured on the Exposure page ({exp.method}"
                               + (f", {exp.samples:,} fillers" if exp.samples else "") + ")" if exp else
                               f"measured when you build ({have['method']}, {have['samples']:,} random fillers "
                               f"for sampled estimators, seed {have['seed']})") + "\n"
        "- **Extraction**: " + (f"the {ext.algorithm} search of the Extraction page" if ext else
                                f"a shortest-path search when you build (node budget {have['max_nodes']:,})"))
    extras: dict = {}
    audit = st.session_state.get(AUDIT_SHOWN)
    c = st.columns(3)
    if audit and Path(audit).is_dir():
        if c[0].checkbox("Include the privacy audit", value=True, key="w_rep_audit",
                         help=f"The audit last shown on the Privacy audit page ({shown(audit)})"):
            extras["audit"] = audit
    else:
        c[0].caption("Open the Privacy audit page to include an audit.")
    longtail = st.session_state.get("ssviz_longtail_shown")  # set by the Long tail page
    if longtail and Path(longtail).is_dir() and c[0].checkbox(
            "Include the long tail", value=True, key="w_rep_longtail",
            help=f"The pool last shown on the Long tail page ({shown(longtail)})"):
        extras["longtail"] = longtail
    if c[1].checkbox("Include the defenses comparison", value=False, key="w_rep_defenses",
                     help="The bundled defense results and those trained on the Defenses page"):
        extras["defenses"] = True
    mia = st.session_state.get("ssviz_mia_shown")  # set by the Membership page
    if mia and Path(mia).is_dir() and c[0].checkbox(
            "Include the membership result", value=True, key="w_rep_mia",
            help=f"The result last shown on the Membership page ({shown(mia)})"):
        extras["membership"] = mia
    studies = {p: n for p, n in ((DEFAULT_DB, "your results"), (BUNDLED_STUDY, "bundled demo study")) if p.is_file()}
    study = c[2].selectbox("Per-user study", [None, *studies], key="w_rep_study",
                           format_func=lambda p: "none" if p is None else f"{studies[p]} ({shown(p)})")
    if study is not None:
        extras["study"] = str(study)
    return extras


def sections(extras: dict) -> dict:
    """The optional sections' data, read as ``python -m ssviz report`` reads them."""
    out: dict = {}
    if extras.get("audit"):
        from ssviz.audit.run import load_audit
        out["audit"] = load_audit(extras["audit"])
    if extras.get("defenses"):
        from ssviz.defenses.compare import load_results
        from ssviz.paths import bundled
        from ssviz.records import DefenseResult
        records = load_results(bundled("defenses/demo-results.json")) + \
            [DefenseResult.from_json({k: v for k, v in r.items() if k != "source"})
             for r in st.session_state.get(DEFENSE_RUNS, [])]
        out["defenses"] = records
    if extras.get("study"):
        out["study"] = cache.store(extras["study"]).comparison()
    if extras.get("membership"):
        from ssviz.membership.run import load_mia
        out["membership"] = load_mia(extras["membership"])
    return out


def model_file(current) -> Path | None:
    """The current model's checkpoint file (None for an upload, which is kept in memory only)."""
    if current.key.startswith("upload:"):
        return None
    return Path(state.models()[current.key]["source"])


def settings_of(current, template, secret, findings, have: dict, extras: dict, reveal: bool) -> dict:
    """The methods section's settings, and the command that rebuilds the same numbers from a terminal."""
    exp = findings[0].exposure
    settings = {"exposure estimator": exp.method, "samples": exp.samples or "all", "seed": have["seed"],
                "extraction node budget": have["max_nodes"] if have["extraction"] is None else
                f"from the Extraction page ({findings[0].extraction.algorithm})", "made with": "the ssviz app"}
    path = model_file(current)
    if path is not None:
        argv = ["--checkpoint", shown(path), "--template", template.text, "--secret", redact(secret, reveal),
                "--method", have["method"], "--samples", str(have["samples"]), "--seed", str(have["seed"]),
                "--max-nodes", str(have["max_nodes"])]
        argv += ["--audit", shown(extras["audit"])] if extras.get("audit") else []
        argv += ["--study", shown(extras["study"])] if extras.get("study") else []
        argv += ["--membership", shown(extras["membership"])] if extras.get("membership") else []
        argv += (["--reveal"] if reveal else []) + ["--out", "report.html"]
        settings["command"] = "python -m ssviz report " + " ".join(shlex.quote(a) for a in argv)
    return settings


def build(current, template, secret, findings, have: dict, extras: dict, reveal: bool, measured_key) -> dict:
    """Render the report (once per inputs: a file is about 5 MB) and keep the last one in the session."""
    from ssviz.report import Report, model_summary, render

    key = ("html", measured_key, reveal, tuple(sorted(extras.items())), len(st.session_state.get(DEFENSE_RUNS, [])))
    built = st.session_state.get(HTML)
    if built is not None and built["key"] == key:
        return built
    path = model_file(current)
    summary = model_summary(current.model, path, current.name)
    if current.key.startswith("upload:"):
        summary.sha256 = current.key.split(":", 1)[1]  # an upload is named by its bytes' SHA-256
    data = sections(extras)
    if extras.get("longtail"):
        from ssviz.report.longtail import longtail_summary
        data["longtail"] = longtail_summary(extras["longtail"], reveal)
    report = Report(summary, findings, reveal=reveal, settings=settings_of(current, template, secret, findings,
                                                                           have, extras, reveal), **data)
    built = {"key": key, "html": render(report), "name": f"ssviz-report-{slug(current.name)[:40]}.html"}
    st.session_state[HTML] = built
    return built


def body() -> None:
    current, template, secret = analysis_header(
        "Report", "One HTML file of what this session measured, for people who were not there: a verdict in plain "
                  "language, the exposure and extraction of the secret under test, and the audit, defenses and "
                  "per-user study if you include them. It opens offline in any browser and prints cleanly; it is "
                  "the same file `python -m ssviz report` writes.")
    have = measured(current, template, secret)
    extras = inputs_section(current, template, secret, have)
    reveal = st.checkbox("Reveal secrets (show them in full; the report's first line says so)", value=False,
                         key="w_rep_reveal")
    key, run = findings_job(current, template, secret, have)
    clicked = st.button("Build report", type="primary", icon=":material/description:", key="rep_build")
    findings = cached_job(JOB, key, "Measuring for the report...", run, start=clicked,
                          again="Press **Build report** to run again.")
    if findings is None:
        if st.session_state.get(JOB) is None:
            st.info("Press **Build report**: what is missing is measured first.")
        return
    try:
        built = build(current, template, secret, findings, have, extras, reveal, key)
    except SsvizError as e:
        st.error(message(e))
        return
    verdict = findings[0].verdict
    st.success(f"Report ready ({len(built['html']) / 2**20:.1f} MB): the secret is {verdict}; secrets are "
               + ("shown in full." if reveal else "redacted."))
    html = built["html"]
    st.download_button("Download report (HTML)", lambda: html, file_name=built["name"], mime="text/html",
                       key="rep_download", icon=":material/download:", on_click="ignore", type="primary")
    with st.expander("Preview: the file as its readers will see it", expanded=True):
        st.components.v1.html(html, height=900, scrolling=True)


run_page(body)
