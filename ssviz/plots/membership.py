"""Membership figures: every attack's ROC with the blind baseline's beside them, and one text's units
coloured by log-probability and by Min-K%++ z. Pure builders over numbers (no model, no streamlit)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from ssviz.plots.audit import roc_figure
from ssviz.plots.tokens import plotly_text, visible

BLIND_LABEL = "blind baseline (no model)"


def attack_rocs(curves: dict, blind: tuple | None = None, title: str | None = None) -> go.Figure:
    """``{label: (fpr, tpr)}`` of the attacks on log-log axes; ``blind`` (fpr, tpr) drawn dashed and black, the
    line the attacks must clear before they say anything about memorization."""
    fig = roc_figure(curves, title=title)
    if blind is not None:
        floor = 10 ** fig.layout.xaxis.range[0]
        fig.add_trace(go.Scatter(x=np.maximum(blind[0], floor), y=np.maximum(blind[1], floor), mode="lines",
                                 name=BLIND_LABEL, line=dict(color="black", dash="dash", width=2.5),
                                 hovertemplate="blind<br>FPR %{x:.2%}<br>TPR %{y:.2%}<extra></extra>"))
    return fig


def unit_heat(units: Sequence[str], logp: Sequence[float | None], z: Sequence[float | None],
              title: str | None = None) -> go.Figure:
    """Two rows of cells, one per unit in reading order: its log-probability (top) and its Min-K%++ z (bottom),
    coloured low = red. The first unit is context (no prediction: blank). Min-K% averages the reddest
    cells of the top row, Min-K%++ those of the bottom row."""
    n = len(units)
    labels = [plotly_text(visible(u)) for u in units]
    rows = (("log p (nats)", logp, "Reds_r", 0.6), ("Min-K%++ z", z, "RdBu", 0.1))
    fig = go.Figure()
    for r, (name, values, scale, y) in enumerate(rows):
        vals = [np.nan if v is None else float(v) for v in values]
        fig.add_trace(go.Heatmap(
            z=[vals], x=list(range(n)), y=[name], text=[labels], texttemplate="%{text}", colorscale=scale,
            zmid=0 if r == 1 else None, showscale=True, name=name, xgap=1, ygap=2,
            colorbar=dict(title=name, len=0.45, y=0.78 - 0.55 * r, thickness=12),
            hovertemplate="%{text}<br>" + name + " %{z:.2f}<extra></extra>", yaxis="y" if r == 0 else "y2"))
    fig.update_layout(title=title, height=260, margin=dict(t=40 if title else 10, b=20, l=10, r=10),
                      xaxis=dict(showticklabels=False, range=[-0.5, min(n, 80) - 0.5]),
                      yaxis=dict(domain=[0.55, 1]), yaxis2=dict(domain=[0, 0.45]), font=dict(size=13),
                      plot_bgcolor="white")
    return fig
