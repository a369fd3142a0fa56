"""Per-user study figures (the paper's Table 5 view): exposure per secret, and what it depends on."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

EXTRACTED_COLORS = {True: "#c0392b", False: "#2e86c1"}
EXTRACTED_NAMES = {True: "extracted", False: "not extracted"}


def secret_labels(df: pd.DataFrame) -> pd.Series:
    """``user · TYPE …120``: secrets are never shown in clear, only the tail redaction allows for their kind."""
    from ssviz.redaction import stored_tail
    tails = pd.Series([stored_tail(l4, t) for l4, t in zip(df["last4"].astype(str), df["type"].astype(str))],
                      index=df.index, dtype=object)
    return df["user"].astype(str) + " · " + df["type"].str.upper() + " …" + tails


def exposure_by_secret(df: pd.DataFrame) -> go.Figure:
    """One bar per secret, highest exposure first, red when a search extracted it."""
    df = df.assign(label=secret_labels(df)).sort_values("exposure", ascending=False)
    fig = go.Figure()
    for extracted in (True, False):
        part = df[df["extracted"] == extracted]
        if part.empty:
            continue
        fig.add_trace(go.Bar(x=part["label"], y=part["exposure"], name=EXTRACTED_NAMES[extracted],
                             marker_color=EXTRACTED_COLORS[extracted],
                             customdata=part[["times_present", "exposure_method"]].to_numpy(),
                             hovertemplate="%{x}<br>exposure %{y:.1f} bits (%{customdata[1]})<br>"
                                           "present %{customdata[0]} times<extra></extra>"))
    fig.update_layout(xaxis=dict(categoryorder="array", categoryarray=list(df["label"])),
                      yaxis_title="exposure (bits)", legend_title="extraction", height=420,
                      margin=dict(t=20, b=40), font=dict(size=15))
    return fig


def exposure_scatter(df: pd.DataFrame, x: str, log_x: bool = False) -> go.Figure:
    """Exposure against ``x`` (``times_present`` or ``corpus_chars``), coloured by extraction."""
    titles = {"times_present": "times the secret appears in the user's mail",
              "corpus_chars": "user's corpus size (characters)", "messages": "messages"}
    fig = go.Figure()
    for extracted in (True, False):
        part = df[df["extracted"] == extracted]
        if part.empty:
            continue
        fig.add_trace(go.Scatter(x=part[x], y=part["exposure"], mode="markers", name=EXTRACTED_NAMES[extracted],
                                 text=secret_labels(part), marker=dict(size=13, color=EXTRACTED_COLORS[extracted],
                                                                       line=dict(width=1, color="white")),
                                 hovertemplate="%{text}<br>%{x:,}<br>exposure %{y:.1f} bits<extra></extra>"))
    fig.update_layout(xaxis_title=titles.get(x, x), yaxis_title="exposure (bits)", height=380,
                      xaxis_type="log" if log_x else None, margin=dict(t=20, b=40), font=dict(size=15))
    return fig


def found_secrets_chart(rows) -> go.Figure:
    """Exposure of each secret found in a corpus (``ssviz.scan.ScanRow``), most exposed first, red when a
    search extracted it: the same view as the study's, one bar per secret labelled by its kind."""
    df = pd.DataFrame([{"user": r.label, "type": r.type, "last4": r.last4, "times_present": r.times_present,
                        "exposure": r.exposure, "exposure_method": r.exposure_method, "extracted": r.extracted}
                       for r in rows if r.exposure is not None])
    return exposure_by_secret(df)
