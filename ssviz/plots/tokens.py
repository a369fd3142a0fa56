"""What a model pays for each token (or character) of a secret's text: the cost strip, and how token texts
are shown. Pure functions from data to figures (no model, no streamlit).

A transformer reads a text as tokens (``" code"``, ``" 4"``, ``"46"``): the strip puts
one bar per token, as high as its cost in bits, the secret's tokens in red, each
marked with what a random guess of its slot characters would pay. Where the red bars
fall well under their marks, the model "knows" the rest of the secret.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import plotly.graph_objects as go

_SHOWN = str.maketrans({" ": "␣", "\n": "↵", "\t": "→", "\r": "␍"})
LOOKAHEAD = 4  # characters a token may skip over (pieces of a multi-byte character spell none on their own)
SECRET_COLOR, OTHER_COLOR, CHANCE_COLOR = "#c0392b", "#8fa8c8", "#1b2631"


def visible(text: str | None) -> str:
    """A token's text with spaces and line breaks drawn (``" 4"`` as ``"␣4"``), so it can be told from ``"4"``."""
    return text.translate(_SHOWN) if text else "∅"


def plotly_text(text: str) -> str:
    """``text`` for a figure's labels and hovers, which read a few HTML tags: ``<s>`` (Llama's BOS) would strike
    the label through instead of showing."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unit_spans(units: Sequence[str], text: str) -> list[tuple[int, int]]:
    """The character span ``[start, end)`` of each unit (token text or character) in ``text``, left to right.

    A unit that spells nothing of ``text`` where reading stands (a special token such as
    ``<s>``, a piece of a multi-byte character) gets an empty span there; the next unit
    may then start a few characters further on.
    """
    spans, pos = [], 0
    for unit in units:
        at = next((q for q in range(pos, min(pos + LOOKAHEAD, len(text)) + 1)
                   if unit and text.startswith(unit, q)), None)
        if at is None:
            spans.append((pos, pos))
            continue
        spans.append((at, at + len(unit)))
        pos = at + len(unit)
    return spans


def secret_units(units: Sequence[str], text: str, template) -> dict[int, float]:
    """``{unit index: chance bits}`` for the units of ``template``'s ``text`` that spell slot characters.

    Chance bits: what a uniformly random guess of the slot characters a unit spells
    costs (``log2 10`` per digit), the reference its real cost compares to.
    """
    start = len(template.prefix)
    chance = {start + p: math.log2(len(a)) for p, a in zip(template.slot_positions, template.filler_alphabets)}
    out = {}
    for i, (a, b) in enumerate(unit_spans(units, text)):
        covered = [chance[q] for q in range(a, b) if q in chance]
        if covered:
            out[i] = float(sum(covered))
    return out


def cost_strip(units: Sequence[tuple[str, float | None]], secret: dict[int, float] | None = None,
               unit: str = "token", title: str | None = None) -> go.Figure:
    """One bar per unit, ``(text, bits)`` in reading order (bits None: the first unit, read as context).

    ``secret``: :func:`secret_units`, drawn red with a dash at the chance cost of each.
    """
    secret = secret or {}
    xs = list(range(len(units)))
    fig = go.Figure()
    for name, keep, color in ((f"the secret's {unit}s", True, SECRET_COLOR), (f"other {unit}s", False, OTHER_COLOR)):
        idx = [i for i in xs if (i in secret) == keep and units[i][1] is not None]
        if not idx:
            continue
        fig.add_trace(go.Bar(x=idx, y=[units[i][1] for i in idx], name=name, marker_color=color,
                             text=[f"{units[i][1]:.1f}" for i in idx], textposition="outside",
                             customdata=[plotly_text(visible(units[i][0])) for i in idx],
                             hovertemplate="%{customdata}: %{y:.2f} bits<extra>" + name + "</extra>"))
    marks = sorted(secret)
    if marks:
        fig.add_trace(go.Scatter(x=marks, y=[secret[i] for i in marks], mode="markers", name="a random guess",
                                 marker=dict(symbol="line-ew", size=34, color=CHANCE_COLOR,
                                             line=dict(width=3, color=CHANCE_COLOR)),
                                 hovertemplate="a random guess: %{y:.2f} bits<extra></extra>"))
    context = [i for i in xs if units[i][1] is None]
    ticks = [plotly_text(visible(t)) + ("<br>(context)" if i in context else "") for i, (t, _) in enumerate(units)]
    top = max([b for _, b in units if b is not None] + list(secret.values()) + [1.0])
    fig.update_xaxes(tickvals=xs, ticktext=ticks, range=[-0.6, len(units) - 0.4], tickfont=dict(family="monospace"))
    fig.update_layout(title=title, yaxis_title=f"bits (cost of the {unit})", yaxis_range=[0, top * 1.2],
                      barmode="overlay", bargap=0.15, height=360, margin=dict(t=50 if title else 20, b=40),
                      legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"),
                      plot_bgcolor="white", font=dict(size=14))
    return fig
