"""Live training figure: losses and the canary's exposure per epoch."""

from __future__ import annotations

import plotly.graph_objects as go

from ssviz.plots.defenses import training_dynamics


def training_progress(epochs: list[dict], max_exposure: float | None = None,
                      title: str | None = None) -> go.Figure:
    """Exposure per epoch beside train/validation loss (the paper's Figure 4), with the exposure ceiling.

    ``max_exposure`` (log2 |R|) marks where the canary ranks first among all fillers.
    """
    fig = training_dynamics(epochs, title=title)
    if max_exposure and epochs:
        fig.add_hline(y=max_exposure, line_dash="dot", line_color="gray", secondary_y=False,
                      annotation_text=f"ranked first ({max_exposure:.1f} bits)", annotation_position="top left")
        fig.update_yaxes(range=[0, max_exposure * 1.08], secondary_y=False)
    return fig
