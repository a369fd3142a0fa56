"""Plot builders: the figures carry exactly the data they were given."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ssviz.plots.exposure import exposure_bars, exposure_histogram, histogram_counts, plain_reading
from ssviz.plots.search_tree import found_so_far, frontier, tree_figure, tree_nodes
from ssviz.plots.study import exposure_by_secret, exposure_scatter
from ssviz.plots.training import training_progress


def trace_by_name(fig, name):
    return next(t for t in fig.data if t.name == name)


def test_histogram_counts_sum_to_n_and_secrets_are_marked_where_they_are():
    rng = np.random.default_rng(0)
    lps = rng.normal(60, 5, 10_000)
    fig = exposure_histogram(lps, {"canary": 31.5, "control": 58.0}, {"a": 1.0, "loc": 58.0, "scale": 6.0},
                             bins=50)
    bars = trace_by_name(fig, "random fillers")
    assert len(bars.y) == 50 and int(np.sum(bars.y)) == 10_000  # binned here: 50 bars, not 10^4 points
    counts, edges = np.histogram(lps, bins=50)
    assert np.array_equal(bars.y, counts)
    assert np.allclose(bars.x, (edges[:-1] + edges[1:]) / 2)
    assert list(trace_by_name(fig, "canary").x) == [31.5, 31.5]
    assert list(trace_by_name(fig, "control").x) == [58.0, 58.0]
    fit = trace_by_name(fig, "skew-normal fit")
    assert min(fit.x) <= 31.5  # the density reaches the secret, far in the tail
    # the density is scaled to counts: pdf x N x bin width
    width = edges[1] - edges[0]
    assert np.allclose(fit.y, stats.skewnorm.pdf(fit.x, 1.0, 58.0, 6.0) * 10_000 * width)


def test_histogram_counts_helper():
    counts, edges = histogram_counts([1, 2, 2, 3], bins=3)
    assert counts.tolist() == [1, 2, 1] and len(edges) == 4


def test_exposure_bars_carry_values_and_asymmetric_ci():
    fig = exposure_bars([{"label": "a", "exposure": 19.9, "ci": None},
                         {"label": "b", "exposure": 1.1, "ci": [0.5, 2.0]}], max_exposure=19.93)
    bar = fig.data[0]
    assert list(bar.x) == ["a", "b"] and list(bar.y) == [19.9, 1.1]
    assert fig.layout.xaxis.type == "category"  # "281546" is a label, not a number
    assert list(bar.error_y.array) == pytest.approx([0, 0.9]) and list(bar.error_y.arrayminus) == \
        pytest.approx([0, 0.6])


def test_plain_reading():
    assert "rank 1 of 1,000,000" in plain_reading(19.93, 1, 10 ** 6).lower().replace("ranks", "rank")
    assert "2^19.9" in plain_reading(19.93, 1, 10 ** 6)
    assert "chance" in plain_reading(0.4)
    assert "beyond log2|R| = 19.93" in plain_reading(25.5, None, 10 ** 6)  # skew-normal past the space


# A hand-made Dijkstra trace over a two-digit space {0,1}x{0,1,2}, secret "12".
TRACE = {
    "algorithm": "dijkstra", "template": "x {[01]:1}{[012]:1}", "prefix_bits": 3.0, "capped": False,
    "max_steps": 100,
    "steps": [
        {"step": 0, "expanded": [{"node": "", "cost": 3.0}],
         "children": [{"node": "0", "parent": "", "char": "0", "edge": 2.0, "cost": 5.0, "kept": True},
                      {"node": "1", "parent": "", "char": "1", "edge": 1.0, "cost": 4.0, "kept": True}],
         "frontier_size": 2, "found": []},
        {"step": 1, "expanded": [{"node": "1", "cost": 4.0}],
         "children": [{"node": "10", "parent": "1", "char": "0", "edge": 3.0, "cost": 7.0, "kept": True},
                      {"node": "11", "parent": "1", "char": "1", "edge": 4.0, "cost": 8.0, "kept": True},
                      {"node": "12", "parent": "1", "char": "2", "edge": 0.5, "cost": 4.5, "kept": True}],
         "frontier_size": 4, "found": [{"filler": "12", "log_perplexity": 4.5}]},
        {"step": 2, "expanded": [{"node": "0", "cost": 5.0}],
         "children": [{"node": "00", "parent": "0", "char": "0", "edge": 1.0, "cost": 6.0, "kept": True}],
         "frontier_size": 4, "found": []},
    ],
    "result": {"found": "12", "log_perplexity": 4.5, "top": [{"filler": "12", "log_perplexity": 4.5}]},
}


def test_tree_nodes_follow_the_steps():
    nodes = {n["node"]: n for n in tree_nodes(TRACE, 0, "12")}
    assert set(nodes) == {"", "0", "1"} and nodes[""]["status"] == "current"
    nodes = {n["node"]: n for n in tree_nodes(TRACE, 1, "12")}
    assert nodes["1"]["status"] == "current" and nodes[""]["status"] == "expanded"
    assert nodes["12"]["status"] == "found" and nodes["0"]["status"] == "frontier"
    assert {k for k, n in nodes.items() if n["on_path"]} == {"", "1", "12"}
    assert nodes["12"]["cost"] == 4.5 and nodes["1"]["cost"] == 4.0
    # tidy layout: leaves in lexicographic order, parents centred over their children
    assert nodes["0"]["x"] < nodes["10"]["x"] < nodes["11"]["x"] < nodes["12"]["x"]
    assert nodes["1"]["x"] == pytest.approx((nodes["10"]["x"] + nodes["12"]["x"]) / 2)
    nodes = {n["node"]: n for n in tree_nodes(TRACE, 2, "12")}
    assert nodes["0"]["status"] == "current" and nodes["1"]["status"] == "expanded"


def test_tree_figure_highlights_the_current_step_and_the_secrets_path():
    fig = tree_figure(TRACE, 1, "12")
    current = trace_by_name(fig, "expanded at this step")
    assert [c[0] for c in current.customdata] == ["1"] and list(current.y) == [-1]
    path = trace_by_name(fig, "path to 12")
    assert list(path.y) == [0, -1, -2]  # root -> "1" -> "12"
    found = trace_by_name(fig, "complete filler found")
    assert [c[0] for c in found.customdata] == ["12"]
    moved = trace_by_name(tree_figure(TRACE, 2, "12"), "expanded at this step")
    assert [c[0] for c in moved.customdata] == ["0"]


def test_beam_pruned_nodes_are_drawn_as_pruned():
    beam = {**TRACE, "algorithm": "beam", "steps": [
        {**TRACE["steps"][0], "children": [dict(TRACE["steps"][0]["children"][0], kept=False),
                                           TRACE["steps"][0]["children"][1]]}]}
    fig = tree_figure(beam, 0, "12")
    assert [c[0] for c in trace_by_name(fig, "pruned by the beam").customdata] == ["0"]


def test_frontier_and_found_lists():
    assert frontier(TRACE, 1) == [{"node": "0", "cost": 5.0}, {"node": "10", "cost": 7.0},
                                  {"node": "11", "cost": 8.0}]
    assert found_so_far(TRACE, 0) == [] and found_so_far(TRACE, 2) == [{"filler": "12", "log_perplexity": 4.5}]


STUDY = pd.DataFrame({"user": ["a", "a", "b"], "type": ["ssn", "ccn", "ssn"], "last4": ["1111", "2222", "3333"],
                      "times_present": [1, 20, 5], "exposure": [3.0, 30.0, 12.0],
                      "exposure_method": ["skewnorm", "search", "search"], "extracted": [False, True, True],
                      "corpus_chars": [100, 100, 500], "messages": [1, 1, 2], "run_id": [1, 1, 1]})


def test_study_bars_sorted_and_coloured_by_extraction():
    fig = exposure_by_secret(STUDY)
    ext = trace_by_name(fig, "extracted")
    assert list(ext.x) == ["a · CCN …2222", "b · SSN …3333"] and list(ext.y) == [30.0, 12.0]
    assert list(trace_by_name(fig, "not extracted").y) == [3.0]
    assert list(fig.layout.xaxis.categoryarray) == ["a · CCN …2222", "b · SSN …3333", "a · SSN …1111"]


def test_study_scatter_axes():
    fig = exposure_scatter(STUDY, "times_present", log_x=True)
    assert sorted(trace_by_name(fig, "extracted").x) == [5, 20] and fig.layout.xaxis.type == "log"
    assert list(exposure_scatter(STUDY, "corpus_chars").data[1].x) == [100]


def test_training_progress_marks_the_ceiling():
    epochs = [{"epoch": 1, "train_loss": 2.0, "val_loss": 2.1, "exposure": 3.5},
              {"epoch": 2, "train_loss": 1.5, "val_loss": 1.7, "exposure": 10.2}]
    fig = training_progress(epochs, math.log2(10 ** 6))
    assert list(trace_by_name(fig, "exposure").y) == [3.5, 10.2]
    assert any(s.y0 == pytest.approx(math.log2(10 ** 6)) for s in fig.layout.shapes)
