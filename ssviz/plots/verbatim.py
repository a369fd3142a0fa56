"""Verbatim-extraction figures: the extractable rate against duplicates and against prefix length (the
log-linear laws of Carlini et al. 2022, fitted on the user's own model), and the (n, p)-extraction
probability against the number of samples (Hayes et al. 2024).

Pure builders over the records :func:`ssviz.longtail.verbatim.VerbatimResult.to_json` gives (the
``verbatim.json`` beside ``verbatim.csv``), so a figure shows exactly what the CLI prints.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

RATE_COLOR, MATCH_COLOR, FIT_COLOR = "#c0392b", "#5d7fa8", "#7f7f7f"
CURVE_COLORS = ("#5d7fa8", "#1f6f3f", "#b9770e", "#7d3c98", "#c0392b", "#1a5276", "#935116")
_LAYOUT = dict(font=dict(size=15), legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"))


def _rate_figure(records: list[dict], key: str, law: dict | None, xtitle: str, what: str,
                 title: str | None) -> go.Figure:
    x = np.array([r[key] for r in records], dtype=np.float64)
    rate = np.array([r["rate"] for r in records], dtype=np.float64)
    lo = np.array([r["rate_low"] for r in records], dtype=np.float64)
    hi = np.array([r["rate_high"] for r in records], dtype=np.float64)
    texts = [r["texts"] for r in records]
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=x, y=rate, mode="lines+markers", name="k-extractable (exact greedy completion)",
        line=dict(color=RATE_COLOR, width=2.5), marker=dict(size=8),
        error_y=dict(type="data", symmetric=False, array=hi - rate, arrayminus=rate - lo, thickness=1.2),
        customdata=np.column_stack([texts, lo, hi]) if len(x) else None,
        hovertemplate=f"{what} %{{x:g}}<br>%{{y:.1%}} extractable of %{{customdata[0]:,}} lines"
                      f"<br>95% interval %{{customdata[1]:.1%}} to %{{customdata[2]:.1%}}<extra></extra>"))
    fig.add_trace(go.Scatter(
        x=x, y=[r["mean_match_fraction"] for r in records], mode="lines+markers", name="mean match fraction",
        line=dict(color=MATCH_COLOR, width=2, dash="dot"), marker=dict(size=6),
        hovertemplate=f"{what} %{{x:g}}<br>%{{y:.1%}} of the suffix's units matched on average<extra></extra>"))
    if law and len(x):
        grid = np.geomspace(x.min(), x.max(), 50)
        fig.add_trace(go.Scatter(
            x=grid, y=law["intercept"] + law["slope"] * np.log10(grid), mode="lines", line=dict(color=FIT_COLOR,
                                                                                              dash="dash"),
            name=f"log-linear fit: {law['slope']:+.1%} per 10x (R² {law['r2']:.2f})", hoverinfo="skip"))
    fig.update_layout(title=title, height=420, margin=dict(t=60 if title else 30, b=40), xaxis_title=xtitle,
                      yaxis_title="fraction of lines", yaxis=dict(range=[-0.02, 1.02], tickformat=".0%"), **_LAYOUT)
    fig.update_xaxes(type="log")
    return fig


def rate_by_duplicates(summary: dict, title: str | None = None) -> go.Figure:
    """Extractable rate (with its 95% Clopper-Pearson interval) and mean match fraction against how many
    times the line occurs in the corpus, on a log axis, with the fitted log-linear law."""
    return _rate_figure(summary["by_duplicates"], "duplicates", summary.get("duplicates_law"),
                        "copies of the line in the training data", "copies", title)


def rate_by_prefix(summary: dict, title: str | None = None) -> go.Figure:
    """Extractable rate against the prompt's length in units (the same lines at every length), with its law."""
    return _rate_figure(summary.get("by_prefix", []), "prefix", summary.get("prefix_law"),
                        "prefix length K (units given as the prompt)", "prefix", title)


def extraction_probability(summary: dict, title: str | None = None) -> go.Figure:
    """Mean chance that n samples from the model contain a line's true suffix, per duplicate count: what
    greedy decoding misses (a line the model samples once in a hundred tries is discoverable)."""
    fig = go.Figure()
    for i, g in enumerate(summary["by_duplicates"]):
        probs = g["extraction_probability"]
        n = [int(k) for k in probs]
        fig.add_trace(go.Scatter(x=n, y=[probs[k] for k in probs], mode="lines+markers",
                                 name=f"{g['duplicates']}x ({g['texts']:,})",
                                 line=dict(color=CURVE_COLORS[i % len(CURVE_COLORS)], width=2),
                                 hovertemplate=f"{g['duplicates']} copies<br>%{{x:,}} samples: "
                                               f"%{{y:.3g}}<extra></extra>"))
    fig.update_layout(title=title, height=420, margin=dict(t=60 if title else 30, b=40),
                      xaxis_title="samples drawn from the model (n)",
                      yaxis_title="P(true suffix among them), mean", **_LAYOUT)
    fig.update_xaxes(type="log")
    fig.update_yaxes(type="log", exponentformat="power")
    return fig
