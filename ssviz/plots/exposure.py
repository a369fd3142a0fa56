"""Exposure figures: the log-perplexity histogram with the fitted skew-normal and secrets marked."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from scipy import stats

SECRET_COLORS = ("#c0392b", "#1f6f3f", "#7d3c98", "#b9770e", "#1a5276")


def histogram_counts(values, bins: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """(counts, edges) computed here, so a figure ships ``bins`` bars instead of every sample."""
    values = np.asarray(values, dtype=np.float64)
    return np.histogram(values, bins=bins)


def exposure_histogram(reference_lps, secrets: dict[str, float] | None = None, skewnorm: dict | None = None,
                       bins: int = 60, title: str | None = None, histogram: dict | None = None) -> go.Figure:
    """Histogram of the references' log-perplexities (bits), the skew-normal density scaled to counts,
    and a vertical line per secret (``{label: log-perplexity}``).

    ``histogram`` (an exact result's fixed-bin counts, ``ExposureResult.histogram``) is drawn as about
    ``bins`` bars instead of binning ``reference_lps`` again (10^6 numbers for a 6-digit space); either
    may be None, not both. Secrets far left of the bulk are the memorized ones: exposure measures how far.
    """
    if histogram:
        from ssviz.exposure import Histogram
        counts, edges = Histogram.from_json(histogram).coarse(bins)
        keep = np.flatnonzero(counts)  # the coarse bars span the occupied range; trim empty ends
        if len(keep):
            counts, edges = counts[keep[0]:keep[-1] + 1], edges[keep[0]:keep[-1] + 2]
    else:
        counts, edges = histogram_counts(reference_lps, bins)
    centers, widths = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    fig = go.Figure(go.Bar(x=centers, y=counts, width=widths, name="random fillers", marker_color="#8fa8c8",
                           marker_line_width=0,
                           hovertemplate="log-perplexity %{x:.2f} bits<br>%{y:,} fillers<extra></extra>"))
    if skewnorm:
        lo = min(edges[0], *(secrets or {}).values()) if secrets else edges[0]
        x = np.linspace(lo, edges[-1], 300)
        density = stats.skewnorm.pdf(x, skewnorm["a"], skewnorm["loc"], skewnorm["scale"])
        fig.add_trace(go.Scatter(x=x, y=density * counts.sum() * widths.mean(), mode="lines",
                                 name="skew-normal fit", line=dict(color="#1b2631", width=2.5)))
    ymax = float(counts.max()) if len(counts) else 1.0
    top = ymax * 1.05
    for i, (label, lp) in enumerate((secrets or {}).items()):
        top = max(top, ymax * (1.08 + 0.07 * (i % 4)) * 1.12)  # room for the label above the line's top
        color = SECRET_COLORS[i % len(SECRET_COLORS)]
        fig.add_trace(go.Scatter(x=[lp, lp], y=[0, ymax * (1.08 + 0.07 * (i % 4))], mode="lines+text",
                                 name=label, text=["", label], textposition="top center",
                                 line=dict(color=color, width=3, dash="solid" if i == 0 else "dash"),
                                 hovertemplate=f"{label}<br>log-perplexity %{{x:.2f}} bits<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="log-perplexity (bits; lower = the model finds it more likely)",
                      yaxis_title="number of fillers", bargap=0, height=430, margin=dict(t=50 if title else 20, b=40),
                      legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"),
                      font=dict(size=15), yaxis_range=[0, top])
    return fig


def exposure_bars(rows: list[dict], max_exposure: float | None = None) -> go.Figure:
    """Exposure of several secrets side by side (``rows``: label, exposure, optional ci=[lo, hi])."""
    labels = [r["label"] for r in rows]
    values = [r["exposure"] for r in rows]
    ci = [r.get("ci") for r in rows]
    err = None
    if any(c for c in ci):
        err = dict(type="data", symmetric=False,
                   array=[(c[1] - v) if c else 0 for c, v in zip(ci, values)],
                   arrayminus=[(v - c[0]) if c else 0 for c, v in zip(ci, values)])
    fig = go.Figure(go.Bar(x=labels, y=values, error_y=err, text=[f"{v:.2f}" for v in values],
                           textposition="outside", marker_color=[SECRET_COLORS[i % len(SECRET_COLORS)]
                                                                 for i in range(len(rows))]))
    if max_exposure:
        fig.add_hline(y=max_exposure, line_dash="dot", line_color="gray",
                      annotation_text=f"maximum: log2|R| = {max_exposure:.2f} bits")
    top = max([max_exposure or 0.0, *values, 1.0])
    fig.update_layout(yaxis_title="exposure (bits)", yaxis_range=[0, top * 1.15], height=380,
                      xaxis_type="category",  # fillers look like numbers: keep them as labels
                      margin=dict(t=20, b=40), font=dict(size=15), showlegend=False)
    return fig


def plain_reading(exposure: float, rank: int | None = None, space_size: int | None = None) -> str:
    """One sentence for people: exposure E bits means about 2^E times more likely than a random filler."""
    times = 2.0 ** exposure
    text = (f"This secret is about 2^{exposure:.1f} ≈ {times:,.0f} times more likely than a random filler "
            if times < 1e6 else f"This secret is about 2^{exposure:.1f} ≈ {times:.2e} times more likely than "
            "a random filler ")
    text += "of the same template."
    if rank is not None and space_size:
        text += f" It ranks {rank:,} of {space_size:,}"
        text += ": the model's single most likely filler." if rank == 1 else "."
    top = math.log2(space_size) if space_size else None
    if exposure < 1:
        text += " That is no more than chance: the model has not memorized it."
    elif top is not None and exposure > top + 1e-9:
        text += (f" That is beyond log2|R| = {top:.2f} bits: the fitted curve extrapolates further into the tail "
                 "than the space reaches, so the secret very likely ranks first.")
    elif top is not None and exposure >= top - 1e-9:
        text += " That is the maximum possible: a search would extract it first."
    return text
