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
from ssviz.plots.tokens import cost_strip, secret_units, unit_spans, visible
from ssviz.plots.training import training_progress
from ssviz.templates import Template


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
    assert list(ext.x) == ["a · CCN …2222", "b · SSN …333"] and list(ext.y) == [30.0, 12.0]
    assert list(trace_by_name(fig, "not extracted").y) == [3.0]
    assert list(fig.layout.xaxis.categoryarray) == ["a · CCN …2222", "b · SSN …333", "a · SSN …111"]


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


# --- token traces (transformers) and the cost strip ----------------------------------------------------


def _kid(node: str, sep: str, cost: float, kept: bool = True) -> dict:
    parent, _, token = node.rpartition(sep)
    return {"node": node, "parent": parent, "char": token, "token": token, "token_id": 0, "edge": 1.0,
            "cost": cost, "kept": kept}


# A digit-splitting tokenizer (Llama-style): the root is "<s>PIN " and every digit is a token; secret "12".
SPLIT = {
    "algorithm": "dijkstra", "template": "PIN {d:2}", "prefix_bits": 2.0, "capped": False, "max_steps": 100,
    "unit": "token", "separator": "|",
    "steps": [
        {"step": 0, "expanded": [{"node": "", "cost": 2.0}], "children": [_kid("0", "|", 5.0), _kid("1", "|", 3.0)],
         "frontier_size": 2, "found": []},
        {"step": 1, "expanded": [{"node": "1", "cost": 3.0}],
         "children": [_kid("1|0", "|", 7.0), _kid("1|2", "|", 3.5)], "frontier_size": 3,
         "found": [{"filler": "12", "log_perplexity": 3.5}]},
    ],
    "result": {"found": "12", "log_perplexity": 3.5, "top": [{"filler": "12", "log_perplexity": 3.5}]},
}

# A merging tokenizer (GPT-2-style): the root is "PIN" and " 1", " 12" are tokens; two paths spell " 12".
MERGE = {
    "algorithm": "dijkstra", "template": "PIN {d:2}", "prefix_bits": 0.0, "capped": True, "max_steps": 100,
    "unit": "token", "separator": "/",
    "steps": [
        {"step": 0, "expanded": [{"node": "", "cost": 0.0}],
         "children": [_kid(" 1", "/", 2.0), _kid(" 12", "/", 4.0), _kid(" 3/4", "/", 9.0)],
         "frontier_size": 3, "found": []},
        {"step": 1, "expanded": [{"node": " 1", "cost": 2.0}], "children": [_kid(" 1/2", "/", 3.0)],
         "frontier_size": 3, "found": [{"filler": "12", "log_perplexity": 4.0}]},
    ],
    "result": {"found": "12", "log_perplexity": 4.0, "top": [{"filler": "12", "log_perplexity": 4.0}]},
}


def test_token_trace_nodes_are_tokens_one_level_each():
    nodes = {n["node"]: n for n in tree_nodes(SPLIT, 1, "12")}
    assert set(nodes) == {"", "0", "1", "1|0", "1|2"}
    assert nodes["1|2"]["depth"] == 2 and nodes["1|2"]["parent"] == "1" and nodes["1|2"]["text"] == "2"
    assert nodes["1|2"]["status"] == "found" and nodes["1"]["status"] == "current"
    assert {k for k, n in nodes.items() if n["on_path"]} == {"", "1", "1|2"}
    assert nodes["0"]["x"] < nodes["1|0"]["x"] < nodes["1|2"]["x"]
    assert nodes["1"]["x"] == pytest.approx((nodes["1|0"]["x"] + nodes["1|2"]["x"]) / 2)
    fig = tree_figure(SPLIT, 1, "12")
    assert fig.layout.yaxis.title.text == "tokens chosen"
    assert list(trace_by_name(fig, "path to 12").y) == [0, -1, -2]
    assert "2 3.5" in trace_by_name(fig, "complete filler found").text
    # a character trace keeps its axis
    assert tree_figure(TRACE, 1, "12").layout.yaxis.title.text == "characters chosen"


def test_merging_token_trace_places_found_fillers_and_one_path_to_the_secret():
    nodes = {n["node"]: n for n in tree_nodes(MERGE, 1, "12")}
    # a capped trace's missing ancestor (" 3") anchors its child; depth counts tokens, not characters
    assert nodes[" 3"]["status"] == "expanded" and nodes[" 3/4"]["parent"] == " 3" and nodes[" 3/4"]["depth"] == 2
    assert nodes[" 12"]["depth"] == 1 and nodes[" 1/2"]["depth"] == 2
    # both token paths spelling " 12" are the found filler; the secret's path is the cheaper one
    assert nodes[" 12"]["status"] == "found" and nodes[" 1/2"]["status"] == "found"
    assert {k for k, n in nodes.items() if n["on_path"]} == {"", " 1", " 1/2"}
    fig = tree_figure(MERGE, 1, "12")
    found = trace_by_name(fig, "complete filler found")
    assert sorted(found.text) == ["2 3.0", "␣12 4.0"]  # the token's own text, its space drawn
    assert sorted(c[0] for c in found.customdata) == ["␣1 · 2", "␣12"]
    # a secret no path spells yet: only the part of its text some path reaches
    nodes = {n["node"]: n for n in tree_nodes(MERGE, 1, "10")}
    assert {k for k, n in nodes.items() if n["on_path"]} == {"", " 1"}


def test_tree_labels_escape_what_plotly_reads_as_html():
    trace = {**SPLIT, "template": "PIN {[<s>]:2}", "steps": [
        {"step": 0, "expanded": [{"node": "", "cost": 2.0}], "children": [_kid("<", "|", 1.0), _kid("<|s", "|", 2.0)],
         "frontier_size": 2, "found": []}]}
    fig = tree_figure(trace, 0)
    waiting = trace_by_name(fig, "waiting in the frontier")
    assert sorted(waiting.text) == ["&lt; 1.0", "s 2.0"]
    assert sorted(c[0] for c in waiting.customdata) == ["&lt;", "&lt; · s"]


def test_a_found_filler_no_recorded_path_spells_marks_nothing():
    trace = {**MERGE, "steps": [dict(MERGE["steps"][0], found=[{"filler": "99", "log_perplexity": 1.0}])]}
    nodes = tree_nodes(trace, 0, "99")
    assert not any(n["status"] == "found" for n in nodes)
    assert [n["node"] for n in nodes if n["on_path"]] == [""]
    assert found_so_far(trace, 0) == [{"filler": "99", "log_perplexity": 1.0}]


def test_unit_spans_skip_special_tokens_and_pieces_of_characters():
    assert unit_spans(["<s>", "PIN", " ", "1", "2"], "PIN 12") == [(0, 0), (0, 3), (3, 4), (4, 5), (5, 6)]
    # a multi-byte character split into two byte-level pieces that spell nothing on their own
    assert unit_spans(["caf", "Ã", "©", " 1"], "café 1") == [(0, 3), (3, 3), (3, 3), (4, 6)]
    assert unit_spans(list("PIN 12"), "PIN 12") == [(i, i + 1) for i in range(6)]


@pytest.mark.parametrize("units, want", [
    (["<s>", "PIN", " ", "1", "2"], {3: math.log2(10), 4: math.log2(10)}),   # digits split (Llama)
    (["PIN", " 12"], {1: 2 * math.log2(10)}),                                 # merged with the space (GPT-2)
    (list("PIN 12"), {4: math.log2(10), 5: math.log2(10)}),                  # characters
])
def test_secret_units_are_the_units_spelling_slot_characters(units, want):
    got = secret_units(units, "PIN 12", Template("PIN {d:2}"))
    assert got.keys() == want.keys() and all(got[k] == pytest.approx(v) for k, v in want.items())


def test_secret_units_of_a_template_with_literals_between_slots():
    t = Template("ab {[xy]:1}-{d:1}.")
    units = ["ab", " x", "-", "3", "."]
    assert secret_units(units, t.format("x3"), t) == {1: pytest.approx(1.0), 3: pytest.approx(math.log2(10))}


def test_cost_strip_one_bar_per_token_secret_in_red_with_chance_marks():
    units = [("<s>", None), ("PIN", 4.0), (" ", 1.5), ("1", 0.3), ("2", 3.0)]
    secret = secret_units([u for u, _ in units], "PIN 12", Template("PIN {d:2}"))
    fig = cost_strip(units, secret, title="t")
    red = trace_by_name(fig, "the secret's tokens")
    assert list(red.x) == [3, 4] and list(red.y) == [0.3, 3.0] and list(red.customdata) == ["1", "2"]
    other = trace_by_name(fig, "other tokens")
    assert list(other.x) == [1, 2] and list(other.customdata) == ["PIN", "␣"]
    chance = trace_by_name(fig, "a random guess")
    assert list(chance.x) == [3, 4] and list(chance.y) == pytest.approx([math.log2(10)] * 2)
    # "<s>" escaped: plotly reads <s> in a label as strike-through
    assert list(fig.layout.xaxis.ticktext) == ["&lt;s&gt;<br>(context)", "PIN", "␣", "1", "2"]
    assert list(cost_strip([("<s>", None), ("<", 1.0)]).data[0].customdata) == ["&lt;"]
    chars = cost_strip([("P", None), ("I", 2.0)], {}, unit="character")
    assert [t.name for t in chars.data] == ["other characters"]
    assert fig.layout.yaxis.title.text == "bits (cost of the token)"


def test_visible_draws_spaces_and_line_breaks():
    assert visible(" 4") == "␣4" and visible("a\nb\t") == "a↵b→" and visible("") == "∅" and visible(None) == "∅"
