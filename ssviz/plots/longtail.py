"""Long-tail figures: the distribution of memorization, memorization against novelty and frequency, the
verbatim-extraction curves, and a text's units coloured by what the IN models gain over the OUT models.

Pure builders over arrays and frames (no streamlit, no I/O); the numbers come from
:mod:`ssviz.longtail`, so a figure shows what the CLI wrote.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from ssviz.plots.tokens import plotly_text, visible

ROLE_COLORS = {"novel": "#c0392b", "duplicated": "#1f6f3f", "ordinary": "#5d7fa8"}
CURVE_COLORS = ("#c0392b", "#1a5276", "#1f6f3f", "#b9770e", "#7d3c98")
_LAYOUT = dict(font=dict(size=15), legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"))
METRIC_LABELS = {"mem_accuracy": "memorization (per-unit accuracy, IN - OUT)",
                 "mem_log_likelihood": "memorization (log-likelihood, bits per unit, IN - OUT)"}


def _groups(roles: Sequence[str] | None, n: int) -> list[tuple[str, np.ndarray]]:
    if roles is None:
        return [("examples", np.ones(n, bool))]
    roles = np.asarray(roles, dtype=object)
    return [(r, roles == r) for r in dict.fromkeys(roles.tolist())]


def mem_histogram(mem, roles: Sequence[str] | None = None, metric: str = "mem_accuracy", bins: int = 40) -> go.Figure:
    """How memorization is spread over the training examples (one colour per role where roles are known):
    most examples sit near 0, the long tail to the right."""
    mem = np.asarray(mem, dtype=np.float64)
    ok = np.isfinite(mem)
    edges = np.histogram_bin_edges(mem[ok], bins=bins) if ok.any() else np.linspace(-1, 1, bins + 1)
    centers, widths = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    fig = go.Figure()
    for i, (name, mask) in enumerate(_groups(roles, len(mem))):
        counts, _ = np.histogram(mem[mask & ok], bins=edges)
        fig.add_trace(go.Bar(x=centers, y=counts, width=widths, name=f"{name} ({int((mask & ok).sum()):,})",
                             marker_color=ROLE_COLORS.get(name, CURVE_COLORS[i % len(CURVE_COLORS)]),
                             opacity=0.75, marker_line_width=0,
                             hovertemplate=f"{name}<br>mem %{{x:.3f}}<br>%{{y:,}} examples<extra></extra>"))
    fig.update_layout(barmode="stack", bargap=0, height=380, margin=dict(t=30, b=40),
                      xaxis_title=METRIC_LABELS.get(metric, metric), yaxis_title="training examples", **_LAYOUT)
    return fig


def mem_vs_novelty(mem, out_bits, frequency, texts: Sequence[str], roles: Sequence[str] | None = None,
                   metric: str = "mem_accuracy") -> go.Figure:
    """Memorization against how surprising an example is to the models that never saw it (bits per unit
    under the OUT models: right = novel) with marker size and hover giving how often its text occurs: rare,
    novel examples should sit top right (Feldman's long tail)."""
    mem, out_bits = np.asarray(mem, dtype=np.float64), np.asarray(out_bits, dtype=np.float64)
    frequency = np.asarray(frequency)
    fig = go.Figure()
    for i, (name, mask) in enumerate(_groups(roles, len(mem))):
        idx = np.flatnonzero(mask & np.isfinite(mem) & np.isfinite(out_bits))
        fig.add_trace(go.Scatter(
            x=out_bits[idx], y=mem[idx], mode="markers", name=name,
            marker=dict(size=7 + 3 * np.log2(frequency[idx]), opacity=0.75,
                        color=ROLE_COLORS.get(name, CURVE_COLORS[i % len(CURVE_COLORS)])),
            customdata=np.stack([frequency[idx], [plotly_text(texts[j][:80]) for j in idx]], axis=1)
            if len(idx) else None,
            hovertemplate="%{customdata[1]}<br>OUT models: %{x:.2f} bits/unit<br>mem %{y:.3f}"
                          "<br>occurs %{customdata[0]} time(s)<extra></extra>"))
    fig.update_layout(height=440, margin=dict(t=30, b=40), xaxis_title="surprise under the OUT models "
                      "(bits per unit; right = novel)", yaxis_title=METRIC_LABELS.get(metric, metric), **_LAYOUT)
    return fig


def gain_color(bits: float | None, scale: float) -> str:
    """Red where the IN models predict a unit better than the OUT models, blue where worse, white at 0."""
    if bits is None or not math.isfinite(bits) or scale <= 0:
        return "#f2f2f2"
    t = max(-1.0, min(1.0, bits / scale))
    r, g, b = (192, 57, 43) if t > 0 else (41, 98, 160)
    a = abs(t)
    return f"rgb({round(255 + (r - 255) * a)},{round(255 + (g - 255) * a)},{round(255 + (b - 255) * a)})"


def gain_chips(units: Sequence[str], gains: Sequence[float | None], scale: float | None = None) -> str:
    """HTML: a text's units side by side, each coloured by the bits the IN models gain on it over the OUT
    models (the first unit is context: grey); the hover names the number."""
    finite = [abs(g) for g in gains if g is not None and math.isfinite(g)]
    scale = scale or (max(finite) if finite else 1.0)
    cells = []
    for u, g in zip(units, gains):
        tip = "context" if g is None or not math.isfinite(g) else f"{g:+.2f} bits"
        cells.append(f'<span title="{tip}" style="background:{gain_color(g, scale)};padding:0.15rem 0.2rem;'
                     f'border-radius:0.2rem;font-family:monospace;white-space:pre">{html.escape(visible(u))}</span>')
    return ('<div style="display:flex;flex-wrap:wrap;gap:0.1rem;margin:0.2rem 0 0.8rem">' + "".join(cells)
            + "</div>")
