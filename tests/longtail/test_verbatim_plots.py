"""The verbatim figures draw the numbers of the summary they are given."""

from __future__ import annotations

import numpy as np
import pytest

from ssviz.longtail.verbatim import verbatim
from ssviz.plots import verbatim as plots
from tests.longtail.test_verbatim import CycleModel, cycle_corpus


@pytest.fixture(scope="module")
def summary():
    return verbatim(CycleModel(0.9), cycle_corpus(), prefix=5, suffix=10, prefixes=[2, 5, 20]).to_json()


def test_rate_figures_show_the_rates_and_the_law(summary):
    fig = plots.rate_by_duplicates(summary)
    rates = fig.data[0]
    assert list(rates.x) == [1, 2, 3] and list(rates.y) == [g["rate"] for g in summary["by_duplicates"]]
    fit = fig.data[-1]
    law = summary["duplicates_law"]
    assert fit.y[0] == pytest.approx(law["intercept"]) and f"{law['slope']:+.1%}" in fit.name
    fig = plots.rate_by_prefix(summary)
    assert list(fig.data[0].x) == [2, 5, 20] and fig.layout.xaxis.type == "log"


def test_extraction_probability_figure(summary):
    fig = plots.extraction_probability(summary)
    assert len(fig.data) == 3
    top = fig.data[-1]
    assert list(top.x) == [1, 10, 100, 1000]
    np.testing.assert_allclose(top.y, [summary["by_duplicates"][-1]["extraction_probability"][k]
                                       for k in ("1", "10", "100", "1000")])
