"""Audit figures: in/out score histograms, the ROC on log-log axes, audited vs claimed epsilon.

Pure builders over arrays and numbers (no streamlit, no I/O); the numbers themselves come from
:mod:`ssviz.audit`, so a figure shows exactly what the CLI prints.
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

IN_COLOR, OUT_COLOR = "#c0392b", "#5d7fa8"
CURVE_COLORS = ("#c0392b", "#1f6f3f", "#7d3c98", "#b9770e", "#1a5276")
LOWER_COLOR, CLAIMED_COLOR = "#c0392b", "#8fa8c8"
FDP_COLOR = "#e8a09a"  # the f-DP bound: a lighter shade of the audited colour
_LAYOUT = dict(font=dict(size=15), legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"))


def score_histograms(scores, included, bins: int = 40, title: str | None = None) -> go.Figure:
    """Members' and non-members' membership scores over the same bins (counts computed here).

    The further right the red bars sit from the blue ones, the easier membership is to guess.
    """
    scores = np.asarray(scores, dtype=np.float64)
    included = np.asarray(included, dtype=bool)
    edges = np.histogram_bin_edges(scores, bins=bins)
    centers, widths = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    fig = go.Figure()
    for name, mask, color in (("not inserted", ~included, OUT_COLOR), ("inserted", included, IN_COLOR)):
        counts, _ = np.histogram(scores[mask], bins=edges)
        fig.add_trace(go.Bar(x=centers, y=counts, width=widths, name=f"{name} ({int(mask.sum()):,})",
                             marker_color=color, opacity=0.6, marker_line_width=0,
                             hovertemplate=f"{name}<br>score %{{x:.2f}}<br>%{{y:,}} canaries<extra></extra>"))
    fig.update_layout(barmode="overlay", bargap=0, title=title, height=400, margin=dict(t=50 if title else 20, b=40),
                      xaxis_title="membership score (bits more likely than chance)", yaxis_title="canaries",
                      **_LAYOUT)
    return fig


def roc_figure(curves: dict, fprs=(0.001, 0.01, 0.1), title: str | None = None) -> go.Figure:
    """ROC curves (``{label: (fpr, tpr)}``) on log-log axes, with the chance line and the FPR budgets marked.

    Log axes show the low-FPR corner where membership attacks matter. Zeros cannot sit on a log
    axis, so rates of 0 are drawn at a floor below the smallest positive rate (said on the axis).
    """
    positives = [v for fpr, tpr in curves.values() for v in (*np.asarray(fpr), *np.asarray(tpr)) if v > 0]
    floor = min(min(positives, default=1e-3), min(fprs, default=1e-3)) / 2
    fig = go.Figure(go.Scatter(x=[floor, 1], y=[floor, 1], mode="lines", name="chance",
                               line=dict(color="gray", dash="dash", width=1.5), hoverinfo="skip"))
    for i, (label, (fpr, tpr)) in enumerate(curves.items()):
        x = np.maximum(np.asarray(fpr, dtype=np.float64), floor)
        y = np.maximum(np.asarray(tpr, dtype=np.float64), floor)
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=label, marker=dict(size=4),
                                 line=dict(color=CURVE_COLORS[i % len(CURVE_COLORS)], width=2.5),
                                 hovertemplate=f"{label}<br>FPR %{{x:.2%}}<br>TPR %{{y:.2%}}<extra></extra>"))
    for f in fprs:  # traces, not add_vline: its annotations land at 10^x on log axes (plotly.py #2580)
        fig.add_trace(go.Scatter(x=[f, f], y=[floor, 1], mode="lines+text", name=f"FPR {f:g}", showlegend=False,
                                 text=["", f"FPR {f:g}"], textposition="bottom right", hoverinfo="skip",
                                 line=dict(color="#bbbbbb", dash="dot", width=1), textfont=dict(size=12)))
    lo = math.log10(floor)
    fig.update_layout(title=title, height=440, margin=dict(t=50 if title else 20, b=40),
                      xaxis=dict(type="log", range=[lo, 0], title=f"false positive rate (0 drawn at {floor:.1g})"),
                      yaxis=dict(type="log", range=[lo, 0], title="true positive rate"), **_LAYOUT)
    return fig


def epsilon_bars(rows: list[dict]) -> go.Figure:
    """Audited lower bound beside the claimed epsilon, one pair per model.

    ``rows``: ``label``, ``epsilon_lower``, ``epsilon_claimed`` (None without DP: no claimed bar,
    the label says so) and optionally ``epsilon_lower_fdp`` (a third bar, the f-DP bound). The true
    epsilon lies between the audited and claimed bars if the guarantee holds.
    """
    labels = [r["label"] for r in rows]
    lower = [float(r["epsilon_lower"]) for r in rows]
    claimed = [r.get("epsilon_claimed") for r in rows]
    fdp = [r.get("epsilon_lower_fdp") for r in rows]
    with_fdp = any(v is not None for v in fdp)
    fig = go.Figure()
    fig.add_trace(go.Bar(x=labels, y=lower, name="audited, Steinke et al." if with_fdp else "audited (lower bound)",
                         marker_color=LOWER_COLOR, text=[f"≥ {v:.2f}" for v in lower], textposition="outside"))
    if with_fdp:  # the f-DP bound holds only for a Gaussian trade-off curve: its own, lighter bar
        fig.add_trace(go.Bar(x=labels, y=[v if v is not None else 0 for v in fdp],
                             name="audited, f-DP (Gaussian curve)", marker_color=FDP_COLOR, textposition="outside",
                             text=[f"≥ {v:.2f}" if v is not None else "–" for v in fdp]))
    fig.add_trace(go.Bar(x=labels, y=[c if c is not None else 0 for c in claimed], name="claimed (DP guarantee)",
                         marker_color=CLAIMED_COLOR, textposition="outside",
                         text=[f"≤ {c:.2f}" if c is not None else "no DP guarantee" for c in claimed]))
    top = max([*lower, *(c for c in claimed if c is not None), *(v for v in fdp if v is not None), 1.0])
    fig.update_layout(barmode="group", yaxis_title="epsilon", yaxis_range=[0, top * 1.2], height=400,
                      xaxis_type="category", margin=dict(t=20, b=40), **_LAYOUT)
    return fig


def plain_reading(epsilon_lower: float, epsilon_claimed: float | None, confidence: float = 0.95) -> str:
    """One sentence for people: what the audited bound says next to the guarantee."""
    if epsilon_lower <= 0:
        head = (f"The audit found no leak it can prove at {confidence:.0%} confidence (audited epsilon 0): "
                "the canaries' scores do not tell members apart reliably enough")
    else:
        head = (f"With {confidence:.0%} confidence, this model leaks at least as much as an "
                f"epsilon-{epsilon_lower:.2g} mechanism")
    if epsilon_claimed is None:
        return head + "; it was trained without a DP guarantee, so nothing bounds it from above."
    if epsilon_lower > epsilon_claimed:
        return head + (f", more than its DP guarantee allows (at most {epsilon_claimed:.2g}): the guarantee does not "
                       "hold as stated.")
    return head + f"; its DP guarantee says at most {epsilon_claimed:.2g}."
