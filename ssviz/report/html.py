"""One standalone HTML file for stakeholders: every figure, script and style inline, nothing fetched.

A Content-Security-Policy in the file itself forbids every network request, so
the report opens offline and cannot leak that it was opened. Secrets appear
redacted (at most a third of their characters, see ssviz.redaction) unless the caller reveals them, and then the first
line says so. The numbers are also embedded as JSON (``#ssviz-data``) so tools
and tests can read what the page shows.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from importlib.resources import files

import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

import ssviz
from ssviz.plots.exposure import exposure_bars, exposure_histogram, plain_reading
from ssviz.plots.study import found_secrets_chart
from ssviz.jsonable import finite_json
from ssviz.redaction import redact, shown_count, stored_tail
from ssviz.records import DEFENSE_LABELS
from ssviz.report.findings import EXPOSED_BITS, Finding, ModelSummary

CSP = ("default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
       "img-src data: blob:; font-src data:; connect-src 'none'; form-action 'none'; base-uri 'none'")
PACKAGES = ("torch", "numpy", "scipy", "plotly", "pandas", "duckdb", "opacus")


@dataclass
class Report:
    """Everything a report shows; only ``model`` and ``findings`` are required."""

    model: ModelSummary
    findings: list[Finding]
    reveal: bool = False
    scan: list | None = None                   # ssviz.scan.ScanRow: the secrets found in the training data
    study: pd.DataFrame | None = None          # Store.comparison() rows
    audit: dict | None = None                  # audit metrics (and optionally scores / included arrays)
    defenses: list | None = None               # ssviz.records.DefenseResult (or its JSON): defense runs
    verbatim: dict | None = None               # verbatim.json: verbatim extraction of the training lines
    membership: object | None = None           # ssviz.membership.run.MiaResult: attacks beside the blind baseline
    longtail: dict | None = None               # ssviz.report.longtail.longtail_summary of a counterfactual pool
    unique_features: dict | None = None        # a unique-features run (ssviz.unique_features.run.load)
    settings: dict = field(default_factory=dict)  # estimator settings, seeds, budgets, command line
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))

    def shown(self, secret: str) -> str:
        return redact(secret, self.reveal)

    def label(self, i: int) -> str:
        """``#1 •••••120``: numbered, since redacted secrets can look alike."""
        return f"#{i + 1} {self.shown(self.findings[i].secret)}"


# --- small pieces ------------------------------------------------------------------------------------
def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _num(x, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:,.{digits}f}"


def _table(header: list[str] | None, rows: list[list], cls: str = "") -> str:
    head = "<thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr></thead>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}">{head}<tbody>{body}</tbody></table>'


def _figure(fig: go.Figure, name: str) -> str:
    fig.update_layout(template="plotly_white", font=dict(family="system-ui, sans-serif"))
    div = fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"fig-{name}",
                      config={"displaylogo": False, "responsive": True, "toImageButtonOptions": {"filename": name}})
    return f'<figure class="plot" data-figure="{_e(name)}">{div}</figure>'


def _versions() -> dict:
    out = {"ssviz": ssviz.__version__, "python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    return out


# --- sections ---------------------------------------------------------------------------------------
def verdict_sentence(f: Finding, shown: str) -> str:
    e = f.exposure
    if f.verdict == "extractable":
        x = f.extraction
        return (f"<b>{_e(shown)}</b> is <b class='v-extractable'>extractable</b>: a search of the model found it "
                f"as its single most likely filler after {x.nodes_expanded:,} steps ({x.seconds:.1f} s), without "
                f"knowing it; its exposure is {_num(e.exposure)} bits.")
    if f.verdict == "exposed":
        return (f"<b>{_e(shown)}</b> is <b class='v-exposed'>exposed</b>: {_num(e.exposure)} bits, so the model "
                f"finds it about {2 ** e.exposure:,.0f} times more likely than a random filler; a random filler "
                f"is this exposed with probability {f.chance_probability:.2g}.")
    return (f"<b>{_e(shown)}</b> is <b class='v-chance'>indistinguishable from chance</b>: {_num(e.exposure)} "
            f"bits, below the {EXPOSED_BITS:.2f} bits that a random filler exceeds 5% of the time.")


def scan_verdict(row) -> str:
    """The same three words for a secret found in the training data."""
    if row.extracted:
        return "extractable"
    if row.exposure is None:
        return "not measured"
    return "exposed" if row.exposure >= EXPOSED_BITS else "indistinguishable from chance"


def planted(r: Report, f: Finding) -> bool:
    """Whether ``f`` measures the canary the model's own training planted (its test secret)."""
    canary = (r.model.training or {}).get("canary")
    return isinstance(canary, dict) and canary.get("secret") == f.secret and canary.get("template") == f.template


def _verdict(r: Report) -> str:
    items = "".join(f"<li>{verdict_sentence(f, ('the planted test secret ' if planted(r, f) else '') + r.label(i))}</li>"
                    for i, f in enumerate(r.findings))
    words = [f.verdict for f in r.findings] + [scan_verdict(x) for x in r.scan or []]
    if r.scan is None:
        items += "<li>The training data was not scanned for secrets it may hold (give the corpus to scan it).</li>"
    elif not r.scan:
        items = ("<li>A scan of the training data found no secret of the kinds it looks for (SSNs, card numbers, "
                 "phone numbers, AWS and GitHub keys).</li>") + items
    else:
        counts = {w: words[len(r.findings):].count(w) for w in ("extractable", "exposed")}
        items = (f"<li>Of <b>{len(r.scan)}</b> secret(s) found in the training data, <b class='v-extractable'>"
                 f"{counts['extractable']} extractable</b> and <b class='v-exposed'>{counts['exposed']} "
                 f"exposed</b> (see below).</li>") + items
    worst = ("extractable" if "extractable" in words else "exposed" if "exposed" in words else "none")
    lead = {"extractable": "The model has memorized at least one secret well enough that an attacker who can "
                           "query it could recover it.",
            "exposed": "The model has partly memorized at least one secret: it is measurably more likely than "
                       "chance, though a search did not recover it.",
            "none": "No secret measured here stands out from chance: the model shows no sign of having "
                    "memorized them."}[worst]
    return f'<section id="verdict"><h2>Verdict</h2><p class="lead">{lead}</p><ul>{items}</ul></section>'


def _scan(r: Report) -> str:
    if r.scan is None:
        return ""
    rows = [[x.label, "…" + x.last4, x.times_present, _num(x.exposure), x.exposure_method or "n/a",
             "yes" if x.extracted else "no", scan_verdict(x) if not x.note else x.note] for x in r.scan]
    parts = [f"<p>{len(r.scan)} distinct secret(s) found in the training data by ssviz's scanner (SSNs, card "
             "numbers, US phone numbers, AWS access key IDs, GitHub tokens), each measured in this model.</p>",
             _table(["type", "last 4", "times present", "exposure (bits)", "method", "extracted", "verdict"], rows)]
    left = sum(bool(getattr(x, "left_out", False)) for x in r.scan)
    if left:  # a budgeted scan says what it did not measure
        parts.insert(1, f'<p class="left-out">{left} of them were not measured: over the scan\'s budget (secrets '
                        'and seconds; the most repeated are measured first).</p>')
    measured = [x for x in r.scan if x.exposure is not None]
    if measured:
        parts.append(_figure(found_secrets_chart(measured), "scan"))
    return '<section id="scan"><h2>Secrets in the training data</h2>' + "".join(parts) + "</section>"


def _model(r: Report) -> str:
    m = r.model
    t = (m.training or {})
    cfg = t.get("config") or {}
    rows = [["model", m.name], ["architecture", ", ".join(f"{k} {v}" for k, v in m.description.items())],
            ["parameters", f"{m.parameters:,}"], ["content SHA-256 (file, or a folder's files)", m.sha256 or "not from a file"]]
    if cfg:
        rows += [["training", ", ".join(f"{k} {cfg[k]}" for k in ("epochs", "batch_size", "lr", "seed") if k in cfg)]]
    if t.get("corpus_chars"):
        rows += [["training data", f"{t['corpus_chars']:,} characters"]]
    if t.get("test_loss") is not None:
        rows += [["test loss", _num(t["test_loss"], 4)]]
    if t.get("epsilon") is not None:
        rows += [["DP epsilon", _num(t["epsilon"])]]
    return f'<section id="model"><h2>The model and data measured</h2>{_table(None, rows, "kv")}</section>'


def _exposure(r: Report) -> str:
    rows = []
    for i, f in enumerate(r.findings):
        e = f.exposure
        ci = f"[{_num(e.ci[0])}, {_num(e.ci[1])}]" if e.ci else "n/a"
        rows.append([r.label(i), _num(e.log_perplexity), _num(e.exposure), ci,
                     _num(e.rank) if e.rank else "n/a", f"{e.method}" + (f", {e.samples:,} fillers" if e.samples else ""),
                     _num(e.ks_pvalue, 3)])
    parts = [_table(["secret", "log-perplexity (bits)", "exposure (bits)", "95% CI", "rank", "estimator",
                     "KS p (skew-normal fit)"], rows)]
    first = r.findings[0].exposure
    if first.reference_lps is not None or first.histogram:
        secrets = {r.label(i): f.exposure.log_perplexity for i, f in enumerate(r.findings)}
        parts.append(_figure(exposure_histogram(first.reference_lps, secrets, first.skewnorm,
                                                histogram=first.histogram, title="Log-perplexity of random fillers, secrets marked"),
                             "exposure-histogram"))
    if len(r.findings) > 1:
        parts.append(_figure(exposure_bars([{"label": r.label(i), "exposure": f.exposure.exposure,
                                             "ci": f.exposure.ci} for i, f in enumerate(r.findings)],
                                           math.log2(first.space_size)), "exposure-bars"))
    parts += [f"<p>{_e(plain_reading(f.exposure.exposure, f.exposure.rank, f.exposure.space_size))}</p>"
              for f in r.findings[:1]]
    # how each number was obtained, and whatever its own checks say against it
    parts += [f'<p class="quality">{_e(r.label(i))}: {_e(f.exposure.quality())}.</p>'
              + (f'<p class="warning"><strong>Warning:</strong> {_e(f.exposure.warning)}.</p>'
                 if f.exposure.warning else "") for i, f in enumerate(r.findings)]
    return '<section id="exposure"><h2>Exposure</h2>' + "".join(parts) + "</section>"


def masked_units(f: Finding, reveal: bool) -> tuple[list[tuple[str, float | None]], dict[int, float]]:
    """The cost strip's units with every unit that spells a secret character masked, except units that
    spell only the tail that redaction shows (:func:`ssviz.redaction.shown_count`), and which units hold
    the secret.

    Units are characters or tokens: a token can spell several slot characters (GPT-2 merges digit
    runs), so masking goes by the characters each unit spells, never by a unit's position.
    """
    from ssviz.plots.tokens import secret_units, unit_spans
    from ssviz.templates import Template
    t = Template(f.template)
    text = t.format(f.secret)
    units = [u for u, _ in f.char_bits]
    marks = secret_units(units, text, t)
    slot = sorted(len(t.prefix) + p for p in t.slot_positions)
    n = len(slot) if reveal else shown_count(len(slot))
    shown = set(slot[len(slot) - n:]) if n else set()
    hidden = set(slot) - shown
    out = []
    for (u, b), (a, z) in zip(f.char_bits, unit_spans(units, text)):
        out.append(("•" * max(len(u), 1) if hidden.intersection(range(a, z)) else u, b))
    return out, marks


def _extraction(r: Report) -> str:
    f = r.findings[0]
    x = f.extraction
    if x is None:
        return ""
    secrets = {s.secret for s in r.findings}
    top = [[i + 1, r.shown(t["filler"]) + ("  (the secret)" if t["filler"] in secrets else ""),
            _num(t["log_perplexity"])] for i, t in enumerate(x.top)]
    status = "complete" if x.complete else f"partial: {x.message}"
    found = "the secret" if f.extracted else ("another filler" if x.found else "nothing")
    parts = [f"<p>Shortest-path search ({_e(x.algorithm)}) of the template's fillers found <b>{found}</b> "
             f"first: {x.nodes_expanded:,} nodes expanded, {x.model_steps:,} model steps, {x.seconds:.2f} s "
             f"({_e(status)}).</p>", _table(["rank", "filler", "log-perplexity (bits)"], top)]
    if f.char_bits:
        from ssviz.plots.tokens import cost_strip
        units, marks = masked_units(f, r.reveal)
        parts.append(_figure(cost_strip(units, marks, unit=f.unit, title=f"Cost of each {f.unit} of the secret's text"),
                             "cost-strip"))
    return '<section id="extraction"><h2>Extraction</h2>' + "".join(parts) + "</section>"


def _study(r: Report) -> str:
    df = r.study
    if df is None:
        return ""
    from ssviz.plots.study import exposure_by_secret, exposure_scatter
    rows = [[u, t.upper(), "…" + stored_tail(l4, t), int(n), _num(e), m or "n/a", "yes" if x else "no"]
            for u, t, l4, n, e, m, x in df[["user", "type", "last4", "times_present", "exposure",
                                            "exposure_method", "extracted"]].itertuples(index=False)]
    parts = [_table(["user", "type", "last 4", "times present", "exposure (bits)", "method", "extracted"], rows)]
    if not df.empty:
        parts += [_figure(exposure_by_secret(df), "study-exposure"),
                  _figure(exposure_scatter(df, "times_present"), "study-times")]
    return '<section id="study"><h2>Secrets per user</h2>' + "".join(parts) + "</section>"


def _audit(r: Report) -> str:
    a = r.audit
    if not a:
        return ""
    claimed = a.get("epsilon_claimed")
    rows = [["audited model", _audited_model(r)],
            ["audit settings", ", ".join(f"{k} {a[k]}" for k in ("template", "canary_kind", "insertions", "inclusion",
                                                                 "seed")
                                         if a.get(k) is not None) or "not recorded"],
            ["canaries", _num(a.get("canaries"))], ["AUC", _num(a.get("auc"), 3) + _interval(a.get("auc_ci"))]]
    tpr_ci = a.get("tpr_ci") or {}
    rows += [[f"TPR at FPR {k}", _num(v, 3) + _interval(tpr_ci.get(k))] for k, v in (a.get("tpr_at_fpr") or {}).items()]
    rows += [["epsilon lower bound (Steinke et al.)",
              f"{_num(a.get('epsilon_lower'))} ({_num(a.get('confidence'))} confidence; any (epsilon, delta)-DP "
              "training)"]]
    if "epsilon_lower_fdp" in a:
        rows += [["epsilon lower bound (f-DP)", f"{_num(a.get('epsilon_lower_fdp'))} (same guesses and confidence; "
                                                "holds if the training's privacy curve is Gaussian, as DP-SGD's)"]]
    rows += [["epsilon claimed", _num(claimed) if claimed is not None else "no DP guarantee"]]
    parts = [_table(None, rows, "kv")]
    if a.get("scores") is not None and a.get("included_mask") is not None:
        from ssviz.audit import roc_curve
        from ssviz.plots.audit import epsilon_bars, roc_figure, score_histograms
        fpr, tpr, _ = roc_curve(a["scores"], a["included_mask"])
        parts += [_figure(score_histograms(a["scores"], a["included_mask"]), "audit-scores"),
                  _figure(roc_figure({"canaries": (fpr, tpr)}), "audit-roc")]
        if a.get("epsilon_lower") is not None:
            parts.append(_figure(epsilon_bars([{"label": a.get("name") or "model", "epsilon_lower": a["epsilon_lower"],
                                                "epsilon_claimed": claimed,
                                                "epsilon_lower_fdp": a.get("epsilon_lower_fdp")}]), "audit-epsilon"))
    if a.get("epsilon_lower") is not None:
        from ssviz.plots.audit import plain_reading
        text = plain_reading(a["epsilon_lower"], claimed, a.get("confidence") or 0.95)
    else:
        text = "The audit reports a membership ROC but no epsilon bound (its canaries were not included with " \
               "probability 1/2)."
    return f'<section id="audit"><h2>Privacy audit</h2><p>{_e(text)}</p>' + "".join(parts) + "</section>"


def _interval(ci) -> str:
    """`` [lo, hi]`` of a 95% interval, or nothing when the audit has none."""
    return f" [{_num(ci[0], 3)}, {_num(ci[1], 3)}]" if ci and len(ci) == 2 else ""


def _audited_model(r: Report) -> str:
    """Which model the audit measured: the report's own only when their contents are the same; an audit
    trains its models itself, so otherwise it speaks for its training procedure, not for this model."""
    from ssviz.report.findings import content_sha256
    path = r.audit.get("checkpoint")
    sha = content_sha256(path) if path else None
    if sha is not None and sha == r.model.sha256:
        return f"the model measured above ({r.model.name})"
    where = f"{Path(path).name}, " if path else ""
    return (f"a model the audit trained itself ({where}{r.audit.get('name') or 'audit folder'}): it audits that "
            "training procedure, not the model measured above")


def _defenses(r: Report) -> str:
    if not r.defenses:
        return ""
    from ssviz.plots.defenses import defense_comparison
    recs = r.defenses
    rows = [[DEFENSE_LABELS.get(d.defense, d.defense), d.strength, _num(d.exposure), _num(d.test_loss, 4),
             _num(d.epsilon)] for d in recs]
    parts = [_table(["defense", "strength", "exposure (bits)", "test loss", "epsilon"], rows),
             _figure(defense_comparison(recs), "defenses")]
    return '<section id="defenses"><h2>Defenses compared</h2>' + "".join(parts) + "</section>"


def _verbatim(r: Report) -> str:
    from ssviz.report.verbatim import section
    return section(r.verbatim, _figure) if r.verbatim else ""
def _longtail(r: Report) -> str:
    if r.longtail is None:
        return ""
    from ssviz.report.longtail import longtail_html
    return longtail_html(r.longtail, figure=_figure, table=_table, num=_num)


def _methods(r: Report) -> str:
    rows = []
    for i, f in enumerate(r.findings):
        e = f.exposure
        rows.append([r.label(i), f.template, e.method, _num(e.samples) if e.samples else "all",
                     f"{e.space_size:,}", _num(math.log2(e.space_size))])
    settings = "".join(f"<li>{_e(k)}: {_e(v)}</li>" for k, v in r.settings.items())
    versions = ", ".join(f"{k} {v}" for k, v in _versions().items())
    return f"""<section id="methods"><h2>Methods</h2>
<p><b>Log-perplexity</b> of a text x<sub>1</sub>…x<sub>n</sub>, in bits: P<sub>x</sub> = −Σ<sub>i≥2</sub>
log<sub>2</sub> P(x<sub>i</sub> | x<sub>1</sub>…x<sub>i−1</sub>), the first character being context only.
A <b>template</b> defines a space R of fillers; the <b>rank</b> of a secret is the number of fillers at least as
likely as it (itself included) and its <b>exposure</b> is log<sub>2</sub>|R| − log<sub>2</sub> rank
(Carlini et al., The Secret Sharer, USENIX Security 2019). <i>exact</i> enumerates R; <i>sampled</i> ranks among
random fillers; <i>skewnorm</i> fits a skew-normal to random fillers' log-perplexities and reads −log<sub>2</sub>
CDF at the secret (confidence intervals by bootstrap). <b>Extraction</b> is a shortest-path search for the
filler of lowest log-perplexity, certified exact when complete. A secret is called <i>exposed</i> at
≥ {EXPOSED_BITS:.2f} bits (a random filler gets there with probability ≤ 5%) and <i>extractable</i> when the
search finds it first.</p>
{_table(["secret", "template", "estimator", "samples", "|R|", "log2 |R|"], rows)}
<ul>{settings}</ul>
<p class="small">Versions: {_e(versions)}. Generated {_e(r.created)}.</p></section>"""


def data(r: Report) -> dict:
    """The numbers the page shows, as JSON (secrets redacted exactly as on the page)."""
    return {"model": {"name": r.model.name, "sha256": r.model.sha256, "parameters": r.model.parameters},
            "reveal": r.reveal,
            "secrets": [{"secret": r.shown(f.secret), "label": r.label(i), "template": f.template, "verdict": f.verdict,
                         "extracted": f.extracted, **{k: v for k, v in f.exposure.to_json().items()}}
                        for i, f in enumerate(r.findings)],
            "audit": {k: v for k, v in (r.audit or {}).items() if k not in ("figures", "scores", "included_mask")}
            or None,
            "scan": None if r.scan is None else [x.to_json() for x in r.scan],
            "study_rows": 0 if r.study is None else int(len(r.study)),
            "defenses": len(r.defenses or []),
            "membership": None if r.membership is None else r.membership.to_json(),
            "longtail": None if r.longtail is None else {k: r.longtail[k] for k in ("models", "examples", "top",
                                                                                 "pairs", "by_role")}}


def render(r: Report) -> str:
    """The whole report as one HTML string."""
    if not r.findings and r.scan is None:
        from ssviz.errors import InvalidValueError
        raise InvalidValueError("a report needs at least one secret, or a scan of the training data")
    style = files("ssviz.report").joinpath("report.css").read_text(encoding="utf-8")
    first = ("This report shows secrets in full (revealed on request): do not share it beyond people who may "
             "know them." if r.reveal else
             "Secrets are redacted: at most their last few characters are shown.")
    payload = script_json(finite_json(data(r)))
    measured = [_exposure(r), _extraction(r)] if r.findings else []
    from ssviz.report.membership import membership_section
    from ssviz.report.unique_features import section as unique_features
    body = "".join([_verdict(r), _scan(r), _model(r), *measured, _study(r), _audit(r),
                    membership_section(r.membership, _table, _figure), _defenses(r), _verbatim(r), _longtail(r),
                    unique_features(r.unique_features, escape=_e, number=_num, table=_table, figure=_figure),
                    _methods(r)])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>ssviz report: {_e(r.model.name)}</title>
<style>{style}</style>
<script>{get_plotlyjs()}</script>
</head><body>
<p id="disclosure" class="{'revealed' if r.reveal else 'redacted'}">{_e(first)}</p>
<header><h1>What this model memorized</h1>
<p class="small">ssviz report on {_e(r.model.name)} · {_e(r.created)}</p></header>
{body}
<script type="application/json" id="ssviz-data">{payload}</script>
</body></html>"""


_SCRIPT_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def script_json(obj) -> str:
    """``obj`` as JSON safe inside a ``<script>`` element: ``<``, ``>`` and ``&`` (and the JavaScript line
    separators) written as ``\\uXXXX`` escapes, so no string (a template or model name holding
    ``<!--<script>`` or ``</script>``) can change how the HTML parser reads the rest of the page. The JSON
    parses to the same values."""
    text = json.dumps(obj, default=_json_default, allow_nan=False)
    return "".join(_SCRIPT_ESCAPES.get(c, c) for c in text) if any(c in text for c in _SCRIPT_ESCAPES) else text


def _json_default(o):
    return o.tolist() if hasattr(o, "tolist") else str(o)
