"""Unique-feature figures: the controls' M2 histogram with the UF marked (as the exposure histogram marks a
secret), the spread over seeds, regularizers side by side, and images with and without the feature."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ssviz.plots.exposure import SECRET_COLORS, histogram_counts

CONTROL_COLOR = "#8fa8c8"
M2_AXIS = "M2 (nats): mean KL with the feature minus with random features"


def control_histogram(controls, uf: float | None, *, label: str = "unique feature", bins: int = 30,
                      title: str | None = None) -> go.Figure:
    """Histogram of the controls' M2 and a vertical line at the UF's: far right of the bulk = memorized."""
    controls = np.asarray(controls, np.float64)
    lo = min(controls.min(initial=0), uf if uf is not None else 0)
    hi = max(controls.max(initial=0), uf if uf is not None else 0)
    counts, edges = histogram_counts(controls, bins=np.linspace(lo, hi + 1e-12, bins + 1))
    centers, widths = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    fig = go.Figure(go.Bar(x=centers, y=counts, width=widths, name="controls (never in training)",
                           marker_color=CONTROL_COLOR, marker_line_width=0,
                           hovertemplate="M2 %{x:.4f}<br>%{y} controls<extra></extra>"))
    if uf is not None:
        top = float(counts.max()) if len(counts) else 1.0
        fig.add_trace(go.Scatter(x=[uf, uf], y=[0, top * 1.1], mode="lines+text", name=label, text=["", label],
                                 textposition="top center", line=dict(color=SECRET_COLORS[0], width=3),
                                 hovertemplate=f"{label}<br>M2 %{{x:.4f}}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title=M2_AXIS, yaxis_title="number of controls", bargap=0, height=400,
                      margin=dict(t=50 if title else 20, b=40), font=dict(size=15),
                      legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"))
    return fig


def seed_spread(results: list[dict], title: str | None = None) -> go.Figure:
    """Per training seed: the controls' M2 as a box and the UF's as a red diamond."""
    fig = go.Figure()
    for i, r in enumerate(results):
        fig.add_trace(go.Box(y=r["controls"], x=[f"seed {r['seed']}"] * len(r["controls"]), name="controls",
                             marker_color=CONTROL_COLOR, boxpoints=False, showlegend=i == 0,
                             legendgroup="controls"))
    fig.add_trace(go.Scatter(x=[f"seed {r['seed']}" for r in results], y=[r["m2"] for r in results],
                             mode="markers", name="unique feature", marker=dict(color=SECRET_COLORS[0], size=13,
                                                                                symbol="diamond"),
                             text=[f"rank {r['rank']} of {len(r['controls']) + 1}" for r in results],
                             hovertemplate="%{x}: M2 %{y:.4f}, %{text}<extra></extra>"))
    fig.update_layout(title=title, yaxis_title="M2 (nats)", height=400, margin=dict(t=50 if title else 20, b=40),
                      font=dict(size=15), xaxis_type="category",
                      legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"))
    return fig


def regularizers(settings: dict[str, list[dict]]) -> go.Figure:
    """Side by side per setting: every seed's controls pooled as a box, every seed's UF as a red point."""
    fig = go.Figure()
    for i, (label, results) in enumerate(settings.items()):
        pooled = [c for r in results for c in r["controls"]]
        fig.add_trace(go.Box(y=pooled, x=[label] * len(pooled), name="controls (all seeds)",
                             marker_color=CONTROL_COLOR, boxpoints=False, showlegend=i == 0, legendgroup="c"))
        fig.add_trace(go.Box(y=[r["m2"] for r in results], x=[label] * len(results), name="unique feature (per seed)",
                             marker_color=SECRET_COLORS[0], boxpoints="all", pointpos=0, jitter=0.3,
                             fillcolor="rgba(0,0,0,0)", line=dict(width=0), showlegend=i == 0, legendgroup="u"))
    fig.update_layout(boxmode="group", yaxis_title="M2 (nats)", height=430, margin=dict(t=20, b=40),
                      font=dict(size=15), legend=dict(orientation="h", y=1.02, x=1, xanchor="right",
                                                      yanchor="bottom"))
    return fig


def image_pairs(pairs: list[tuple[str, np.ndarray]], columns: int = 4) -> go.Figure:
    """Grayscale images in a grid (``[(title, [H, W] in [0, 1])]``): e.g. a training image without and with
    the feature, an OOD input with the feature and with a random pattern."""
    rows = max(1, -(-len(pairs) // columns))
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=[t for t, _ in pairs], horizontal_spacing=0.03,
                        vertical_spacing=0.12)
    for i, (_, img) in enumerate(pairs):
        fig.add_trace(go.Heatmap(z=np.asarray(img)[::-1], colorscale="gray", zmin=0, zmax=1, showscale=False,
                                 hovertemplate="row %{y}, column %{x}: %{z:.2f}<extra></extra>"),
                      row=i // columns + 1, col=i % columns + 1)
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False, scaleanchor="x")
    fig.update_layout(height=230 * rows, margin=dict(t=40, b=10, l=10, r=10), font=dict(size=14))
    return fig


def insertions_figure(rows: list[dict]) -> go.Figure:
    """Text: the name's M2 (with its controls' range) and its exposure as a canary, by insertions."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    x = [str(r["insertions"]) for r in rows]
    fig.add_trace(go.Box(x=[xi for xi, r in zip(x, rows) for _ in r["controls"]],
                         y=[c for r in rows for c in r["controls"]], name="controls' M2",
                         marker_color=CONTROL_COLOR, boxpoints=False), secondary_y=False)
    fig.add_trace(go.Scatter(x=x, y=[r["m2"] for r in rows], mode="markers+lines", name="name's M2",
                             marker=dict(color=SECRET_COLORS[0], size=12, symbol="diamond")), secondary_y=False)
    fig.add_trace(go.Scatter(x=x, y=[r["exposure"] for r in rows], mode="markers+lines", name="exposure (bits)",
                             marker=dict(color=SECRET_COLORS[1], size=10), line=dict(dash="dot")),
                  secondary_y=True)
    fig.update_xaxes(title_text="times the name was in the training text", type="category")
    fig.update_yaxes(title_text="M2 (nats)", secondary_y=False)
    fig.update_yaxes(title_text="exposure (bits)", secondary_y=True)
    fig.update_layout(height=420, margin=dict(t=20, b=40), font=dict(size=15),
                      legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"))
    return fig
