"""Plot builders for defenses and memorization dynamics (pure: data in, plotly figure out)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ssviz.records import DEFENSE_LABELS, DefenseEpoch, DefenseResult

COLORS = {"none": "#d62728", "dropout": "#ff7f0e", "weight_decay": "#bcbd22", "quantize8": "#8c564b",
          "regex": "#9467bd", "lpd": "#17becf", "dp": "#2ca02c"}


def _label(r: DefenseResult) -> str:
    text = DEFENSE_LABELS.get(r.defense, r.defense) + ("" if r.strength in ("", "-") else f" {r.strength}")
    return text if r.epsilon is None else text + f" (ε={r.epsilon:.2g})"


def defense_comparison(records: Sequence[DefenseResult], max_exposure: float | None = None) -> go.Figure:
    """Exposure (y) against test loss (x), one point per defense run; the undefended run is a red star.

    A good defense moves a point down (less memorized) without moving it far
    right (little utility lost). ``max_exposure`` (log2 of the space size)
    draws the ceiling: exposure there means the canary ranks first.
    """
    fig = go.Figure()
    defenses = list(dict.fromkeys(r.defense for r in records))
    defenses.sort(key=lambda d: d == "none")  # the undefended star is drawn last, on top
    for defense in defenses:
        rs = [r for r in records if r.defense == defense]
        fig.add_trace(go.Scatter(
            x=[r.test_loss for r in rs], y=[r.exposure for r in rs], mode="markers+text",
            name=DEFENSE_LABELS.get(defense, defense), text=["" if r.strength == "-" else r.strength for r in rs],
            textposition="top center", hovertext=[_label(r) for r in rs],
            hovertemplate="%{hovertext}<br>test loss %{x:.3f}<br>exposure %{y:.1f} bits<extra></extra>",
            marker={"size": 16 if defense == "none" else 11, "symbol": "star" if defense == "none" else "circle",
                        "color": COLORS.get(defense)}))
    if max_exposure:
        fig.add_hline(y=max_exposure, line_dash="dot", line_color="gray",
                      annotation_text=f"canary ranked first ({max_exposure:.1f} bits)")
    fig.add_hline(y=0, line_color="lightgray")
    fig.update_layout(xaxis_title="test loss (nats per character, lower is better)",
                      yaxis_title="canary exposure (bits, lower is safer)", legend_title="defense",
                      margin={"t": 30, "b": 40}, height=460)
    return fig


def training_dynamics(epochs: Sequence[DefenseEpoch | dict], title: str | None = None) -> go.Figure:
    """Exposure per epoch (left axis) beside train and validation loss (right axis): the paper's Figure 4.

    ``epochs``: a defense run's records, or the epoch dicts :func:`ssviz.train.train` reports while it runs
    (the Model page's live chart).
    """
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    df = pd.DataFrame([e.to_json() if isinstance(e, DefenseEpoch) else e for e in epochs])
    if df.empty:
        fig.update_layout(title=title or "no epochs yet")
        return fig
    if "exposure" in df and df["exposure"].notna().any():
        fig.add_trace(go.Scatter(x=df["epoch"], y=df["exposure"], name="exposure", mode="lines+markers",
                                 line={"color": "#d62728", "width": 3}), secondary_y=False)
    for col, color in (("train_loss", "#1f77b4"), ("val_loss", "#ff7f0e")):
        if col in df:
            fig.add_trace(go.Scatter(x=df["epoch"], y=df[col], name=col.replace("_", " "), mode="lines+markers",
                                     line={"color": color, "dash": "dash"}), secondary_y=True)
    fig.update_xaxes(title_text="epoch", dtick=1)
    fig.update_yaxes(title_text="exposure (bits)", secondary_y=False, rangemode="tozero")
    fig.update_yaxes(title_text="loss (nats per character)", secondary_y=True)
    fig.update_layout(title=title, margin={"t": 40 if title else 20, "b": 40}, height=400,
                      legend={"orientation": "h", "y": -0.2})
    return fig


def sweep_heatmap(summary: pd.DataFrame, metric: str = "exposure") -> go.Figure:
    """Mean ``metric`` over seeds per grid cell, with the spread (±std, min-max) in each cell's text."""
    if summary.empty:
        return go.Figure().update_layout(title="no sweep results")
    p1 = summary["param1"].iloc[0]
    p2 = summary["param2"].iloc[0] or ""
    rows = list(dict.fromkeys(summary["value2"])) if p2 else [""]
    cols = list(dict.fromkeys(summary["value1"]))
    z, text = [], []
    for v2 in rows:
        zr, tr = [], []
        for v1 in cols:
            cell = summary[(summary["value1"] == v1) & ((summary["value2"] == v2) if p2 else True)]
            if cell.empty:
                zr.append(None)
                tr.append("")
                continue
            c = cell.iloc[0]
            mean, std = c[f"{metric}_mean"], c[f"{metric}_std"]
            zr.append(mean)
            spread = f" ± {std:.2f}" if pd.notna(std) else ""
            extra = (f"<br>[{c['exposure_min']:.1f}, {c['exposure_max']:.1f}]" if metric == "exposure" else "")
            tr.append(f"{mean:.2f}{spread}{extra}<br>n={int(c['seeds'])}")
        z.append(zr)
        text.append(tr)
    fig = go.Figure(go.Heatmap(z=z, x=[str(c) for c in cols], y=[str(r) for r in rows], text=text,
                               texttemplate="%{text}", colorscale="Reds" if metric == "exposure" else "Blues",
                               colorbar={"title": "bits" if metric == "exposure" else "nats"}))
    fig.update_layout(xaxis_title=p1, yaxis_title=p2 or None, xaxis_type="category", yaxis_type="category",
                      title=f"mean {metric.replace('_', ' ')} over seeds", margin={"t": 40, "b": 40}, height=420)
    return fig


def exposure_during_training(records: Sequence[dict]) -> go.Figure:
    """Exposure of each canary (one line per name) at every measurement of a training run: the curve an
    :class:`ssviz.integrations.ExposureCallback` writes. The dotted ceiling is log2 |R| (ranked first)."""
    fig = go.Figure()
    df = pd.DataFrame(list(records))
    if df.empty:
        fig.update_layout(title="no measurements yet")
        return fig
    for name, g in df.sort_values("step").groupby("name", sort=False):
        ranks = ["—" if r is None or pd.isna(r) else f"{int(r):,}" for r in g.get("rank", [None] * len(g))]
        epochs = ["—" if e is None or pd.isna(e) else f"{e:.2f}" for e in g.get("epoch", [None] * len(g))]
        fig.add_trace(go.Scatter(x=g["step"], y=g["exposure"], mode="lines+markers", name=str(name),
                                 customdata=list(zip(epochs, ranks)),
                                 hovertemplate="step %{x}<br>epoch %{customdata[0]}<br>exposure %{y:.2f} bits<br>"
                                               "rank %{customdata[1]}<extra>%{fullData.name}</extra>"))
    sizes = {int(s) for s in df.get("space_size", pd.Series(dtype=float)).dropna()}
    if len(sizes) == 1:
        top = math.log2(sizes.pop())
        fig.add_hline(y=top, line_dash="dot", line_color="gray", annotation_text=f"ranked first ({top:.1f} bits)")
    fig.add_hline(y=0, line_color="lightgray")
    fig.update_layout(xaxis_title="training step", yaxis_title="canary exposure (bits)", legend_title="canary",
                      margin={"t": 30, "b": 40}, height=420)
    return fig
