"""Extraction algorithms against brute force and the scorer, on small spaces and tiny models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ssviz.cli import main
from ssviz.errors import SpaceTooLargeError, SsvizError, TemplateError
from ssviz.exposure import exact
from ssviz.extraction import (SearchBudgetError, beam_search, brute_force, extract, load_trace, sample,
                              search_exposure, shortest_path)
from ssviz.models import CharRNN, save_checkpoint
from ssviz.scoring import score_fillers, score_space
from ssviz.templates import Template
from tests.conftest import CANARY_SECRET, CANARY_TEMPLATE, TINY_VOCAB

TOL = 1e-5  # bits: batched float32 steps differ from the scorer's in the last digits
# small spaces (<= 10^4) with literals between slots and after the last one
TEMPLATES = ["PIN {d:3}", "My PIN is {d:4}", "ab {[xyz]:2}-{d:2}.", "S {d:1} M {[ab]:3}", "I {a:2}",
             "code {x:1}{d:2}-"]
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])




def tiny(seed: int, sharpness: float = 4.0) -> CharRNN:
    """A random 1x12 LSTM; scaling its head spreads the log-probabilities (fewer near-ties)."""
    torch.manual_seed(seed)
    m = CharRNN(TINY_VOCAB, arch="lstm", embedding_dim=6, hidden_size=12, num_layers=1)
    with torch.no_grad():
        m.head.weight.mul_(sharpness)
    return m.eval()


def brute_lps(model, template: Template) -> np.ndarray:
    return score_space(model, template)


models = st.integers(0, 10_000)
templates = st.sampled_from(TEMPLATES)


@pytest.mark.slow
@FAST
@given(seed=models, text=templates, k=st.integers(1, 8), batch=st.sampled_from([1, 3, 64]))
def test_shortest_path_top_k_equals_brute_force(seed, text, k, batch):
    model, template = tiny(seed), Template(text)
    lps = brute_lps(model, template)
    res = shortest_path(model, template, top_k=k, batch_size=batch)
    assert res.complete and res.message == ""
    expect = np.sort(lps)[:k]
    got = np.array([t["log_perplexity"] for t in res.top])
    assert len(got) == min(k, template.space_size)
    np.testing.assert_allclose(got, expect, atol=TOL)
    # each reported filler really has the reported cost (ties may swap fillers, never costs)
    idx = [template.index_of(t["filler"]) for t in res.top]
    np.testing.assert_allclose(lps[idx], got, atol=TOL)
    assert res.found == res.top[0]["filler"]


@pytest.mark.slow
@FAST
@given(seed=models, text=templates, pick=st.integers(0, 10 ** 6))
def test_search_rank_equals_exact_rank(seed, text, pick):
    model, template = tiny(seed, sharpness=3.0), Template(text)
    secret = template.filler_at(pick % template.space_size)
    ref = exact(model, template, secret)
    lps = ref.reference_lps
    res = search_exposure(model, template, secret, max_nodes=50_000, batch_size=16)
    # exact rank up to fillers whose cost is within float noise of the secret's
    lo = int(np.count_nonzero(lps < ref.log_perplexity - TOL)) + 1
    hi = int(np.count_nonzero(lps <= ref.log_perplexity + TOL))
    assert lo <= res.rank <= hi
    assert res.method == "search"
    assert res.log_perplexity == pytest.approx(ref.log_perplexity, abs=TOL)
    assert res.exposure == pytest.approx(np.log2(template.space_size) - np.log2(res.rank))


@FAST
@given(seed=models, text=templates, width=st.integers(1, 40))
def test_beam_returns_full_filler_with_scorer_cost(seed, text, width):
    model, template = tiny(seed), Template(text)
    res = beam_search(model, template, beam_width=width, top_k=3)
    assert len(res.found) == template.filler_length
    fillers = [t["filler"] for t in res.top]
    np.testing.assert_allclose([t["log_perplexity"] for t in res.top], score_fillers(model, template, fillers),
                               atol=TOL)
    assert res.nodes_expanded <= width * template.filler_length


@FAST
@given(seed=models, text=templates, width=st.integers(1, 5), s=st.integers(0, 100))
def test_approximate_algorithms_never_beat_the_exact_answer(seed, text, width, s):
    model, template = tiny(seed), Template(text)
    best = brute_lps(model, template).min()
    assert beam_search(model, template, beam_width=width).log_perplexity >= best - TOL
    assert sample(model, template, samples=20, seed=s).log_perplexity >= best - TOL


def test_narrow_beam_can_miss_the_best_filler():
    """The paper's lesson: a best filler whose prefix is not among the best prefixes is pruned."""
    template = Template("My PIN is {d:4}")
    misses = 0
    for seed in range(20):
        model = tiny(seed, sharpness=2.0)
        best = shortest_path(model, template)
        greedy = beam_search(model, template, beam_width=1)
        assert greedy.log_perplexity >= best.log_perplexity - TOL
        misses += greedy.found != best.found
    assert misses > 0


@FAST
@given(seed=models, text=templates)
def test_wide_beam_is_exact(seed, text):
    """With a beam as wide as the space nothing is pruned: beam search = brute force."""
    model, template = tiny(seed), Template(text)
    res = beam_search(model, template, beam_width=template.space_size)
    assert res.log_perplexity == pytest.approx(brute_lps(model, template).min(), abs=TOL)


@FAST
@given(seed=models, text=templates, s=st.integers(0, 2 ** 31))
def test_sampling_is_seeded_and_scored(seed, text, s):
    model, template = tiny(seed), Template(text)
    a = sample(model, template, samples=300, seed=s, top_k=5, chunk_size=128)
    b = sample(model, template, samples=300, seed=s, top_k=5, chunk_size=128)
    assert a.top == b.top
    np.testing.assert_allclose([t["log_perplexity"] for t in a.top],
                               score_fillers(model, template, [t["filler"] for t in a.top]), atol=TOL)


def test_sampling_follows_the_model():
    """A sharp model's favourite filler dominates the samples; a different seed gives other draws."""
    model, template = tiny(7, sharpness=12.0), Template("PIN {d:3}")
    best = brute_force(model, template).found
    res = sample(model, template, samples=2000, seed=1)
    assert res.found == best
    other = sample(model, template, samples=50, seed=2, top_k=50)
    assert other.top != sample(model, template, samples=50, seed=1, top_k=50).top


def test_canary_is_extracted(canary_model):
    template = Template(CANARY_TEMPLATE)
    res = shortest_path(canary_model, template, top_k=3)
    assert res.found == CANARY_SECRET and res.complete
    assert brute_force(canary_model, template).found == CANARY_SECRET
    ranked = search_exposure(canary_model, template, CANARY_SECRET)
    assert ranked.rank == exact(canary_model, template, CANARY_SECRET).rank == 1
    assert ranked.exposure == pytest.approx(np.log2(10 ** 4))


def test_batched_pops_keep_the_answer(canary_model):
    template = Template(CANARY_TEMPLATE)
    one = shortest_path(canary_model, template, top_k=5, batch_size=1)
    many = shortest_path(canary_model, template, top_k=5, batch_size=256)
    assert [t["filler"] for t in one.top] == [t["filler"] for t in many.top]
    assert many.model_calls < one.model_calls


def test_paper_stop_rule_runs_twice_the_iterations(tiny_model):
    res = shortest_path(tiny_model, Template("PIN {d:3}"), stop_rule="paper", batch_size=4)
    assert res.found is not None and res.complete


# --- bad input -------------------------------------------------------------------------
def test_template_without_slot_is_refused(tiny_model):
    with pytest.raises(TemplateError, match="no slot"):
        extract(tiny_model, "PIN only", "dijkstra")
    with pytest.raises(SsvizError, match="unknown extraction algorithm"):
        extract(tiny_model, "PIN {d:2}", "magic")


def test_huge_space_for_brute_force_gives_estimate(tiny_model):
    with pytest.raises(SpaceTooLargeError, match=r"1e\+12 fillers.*about .*(hours|days|years)"):
        brute_force(tiny_model, Template("PIN {d:12}"))


def test_budget_exhausted_gives_partial_result(tiny_model):
    template = Template("My PIN is {d:4}")
    res = shortest_path(tiny_model, template, max_nodes=30, batch_size=8, top_k=2)
    assert not res.complete and "node budget" in res.message
    assert res.nodes_expanded == 30
    with pytest.raises(SearchBudgetError, match="exposure <=") as info:
        search_exposure(tiny_model, template, "9999", max_nodes=30)
    assert info.value.rank_lower_bound >= 1
    stopped = shortest_path(tiny_model, template, stop=lambda: True)
    assert not stopped.complete and "stopped" in stopped.message
    beam = beam_search(tiny_model, template, stop=lambda: True)
    assert beam.found is None and not beam.complete


def test_bad_options_are_refused(tiny_model):
    with pytest.raises(SsvizError, match="batch_size"):
        shortest_path(tiny_model, "PIN {d:2}", batch_size=0)
    with pytest.raises(SsvizError, match="beam_width"):
        beam_search(tiny_model, "PIN {d:2}", beam_width=-1)
    with pytest.raises(TemplateError):
        search_exposure(tiny_model, "PIN {d:2}", "123")


def test_state_memory_budget_gives_partial_result(tiny_model):
    res = shortest_path(tiny_model, "My PIN is {d:4}", max_memory_mb=0.001)
    assert not res.complete and "memory budget" in res.message


def test_char_models_search_the_exact_lattice_with_the_generic_pool(tiny_model):
    """A character model is the exact regime of the one lattice: its generic pool and the character trace format."""
    from ssviz.extraction import SearchOptions
    from ssviz.extraction.lattice import Lattice
    from ssviz.extraction.shortest_path import BestFirstSearch
    from ssviz.models.pool import StatePool
    lattice = Lattice(tiny_model, "PIN {d:2}")
    assert lattice.exact and lattice.checked and lattice.separator is None
    assert lattice.root_units == tuple(tiny_model.encode("PIN ")) and lattice.choices == 2
    search = BestFirstSearch(tiny_model, "PIN {d:2}", SearchOptions())
    assert type(search.pool) is StatePool
    trace = shortest_path(tiny_model, "PIN {d:2}", trace=True).trace
    assert "unit" not in trace and "separator" not in trace


def test_options_are_one_object_or_keywords(tiny_model):
    """Keywords and ``options=SearchOptions(...)`` are the same run; keywords win; unknown ones are refused."""
    from ssviz.extraction import SearchOptions
    template = "PIN {d:3}"
    by_keywords = shortest_path(tiny_model, template, top_k=3, max_nodes=40, batch_size=4)
    by_object = shortest_path(tiny_model, template, top_k=3, options=SearchOptions(max_nodes=40, batch_size=4))
    assert by_keywords.top == by_object.top and by_keywords.nodes_expanded == by_object.nodes_expanded == 40
    assert extract(tiny_model, template, "dijkstra", top_k=3, options=SearchOptions(max_nodes=40, batch_size=4),
                   max_nodes=10_000).complete
    with pytest.raises(TypeError, match="batch_size"):
        beam_search(tiny_model, template, batch_size=4)
    with pytest.raises(TypeError, match="options"):
        sample(tiny_model, template, options={"samples": 5})


# --- trace -----------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm,options", [("dijkstra", {"batch_size": 8}), ("beam", {"beam_width": 5}),
                                               ("sampling", {"samples": 50}), ("brute", {"chunk_size": 64})])
def test_trace_round_trips_and_matches_scorer(tiny_model, algorithm, options):
    template = Template("ab {[xyz]:2}-{d:2}.")
    res = extract(tiny_model, template, algorithm, top_k=3, trace=True, **options)
    trace = load_trace(json.dumps(res.trace))
    assert trace == res.trace and trace["algorithm"] == algorithm
    assert trace["result"]["found"] == res.found
    found = [f for step in trace["steps"] for f in step["found"]]
    assert found
    np.testing.assert_allclose([f["log_perplexity"] for f in found],
                               score_fillers(tiny_model, template, [f["filler"] for f in found]), atol=TOL)
    assert extract(tiny_model, template, algorithm, **options).trace is None


def test_dijkstra_trace_is_consistent_and_capped(tiny_model):
    template = Template("PIN {d:3}")
    res = shortest_path(tiny_model, template, batch_size=4, trace=True, max_trace_steps=3,
                        max_trace_children=7)
    trace = res.trace
    assert trace["capped"] and len(trace["steps"]) == 3
    assert all(len(s["children"]) <= 7 for s in trace["steps"])
    root = trace["steps"][0]
    assert root["expanded"] == [{"node": "", "cost": pytest.approx(trace["prefix_bits"])}]
    for c in trace["steps"][1]["children"]:
        parent = c["node"][:-1]
        assert c["parent"] == parent and c["char"] == c["node"][-1]
        parent_cost = next(e["cost"] for e in trace["steps"][1]["expanded"] if e["node"] == parent)
        assert c["cost"] == pytest.approx(parent_cost + c["edge"])
    full = shortest_path(tiny_model, template, batch_size=4, trace=True).trace
    assert not full["capped"]
    assert full["steps"][1]["expanded"][0]["cost"] <= full["steps"][-1]["expanded"][0]["cost"]


def test_load_trace_refuses_garbage(tmp_path):
    with pytest.raises(SsvizError, match="not valid JSON"):
        load_trace("{oops")
    with pytest.raises(SsvizError, match="missing key"):
        load_trace('{"algorithm": "beam"}')
    with pytest.raises(SsvizError, match="not found"):
        load_trace(tmp_path / "none.json")


# --- CLI -------------------------------------------------------------------------------
@pytest.fixture()
def checkpoint(tmp_path):
    return str(save_checkpoint(tiny(5), tmp_path / "tiny.safetensors"))


@pytest.mark.parametrize("algorithm", ["dijkstra", "beam", "sampling", "brute"])
def test_cli_extract_json(checkpoint, tmp_path, capsys, algorithm):
    trace = tmp_path / "t.json"
    code = main(["extract", "--checkpoint", checkpoint, "--template", "PIN {d:3}", "--algorithm", algorithm,
                 "--top", "3", "--beam-width", "20", "--samples", "200", "--trace", str(trace), "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"algorithm", "found", "log_perplexity", "top", "nodes_expanded", "model_steps",
                        "seconds", "complete", "message", "device", "dtype"}
    assert out["algorithm"] == algorithm and len(out["top"]) == 3 and len(out["found"]) == 3
    assert load_trace(trace)["result"]["found"] == out["found"]


def test_cli_exposure_search(checkpoint, capsys):
    assert main(["exposure", "--checkpoint", checkpoint, "--template", "PIN {d:3}", "--secret", "123",
                 "--method", "search", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    model = tiny(5)
    assert out["method"] == "search" and out["rank"] == exact(model, Template("PIN {d:3}"), "123").rank


def test_cli_errors_are_one_line(checkpoint, capsys):
    assert main(["extract", "--checkpoint", checkpoint, "--template", "PIN {d:12}", "--algorithm", "brute"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1


def test_a_search_describes_its_frontier_against_the_secrets_cost_to_a_callback_that_shows_words(tiny_model):
    """Progress of a rank search says what its numbers mean; a callback without ``describes`` gets counts only."""
    from ssviz.extraction.rank import search_exposure
    from ssviz.progress import tell
    from ssviz.scoring import score_fillers
    template = Template("My PIN is {d:4}")
    words, counts = [], []

    def shows(done, total, status=None):
        words.append(status)
    shows.describes = True
    search_exposure(tiny_model, template, "4821", progress=shows, max_nodes=100_000, batch_size=1)
    search_exposure(tiny_model, template, "4821", progress=lambda done, total: counts.append(done),
                    max_nodes=100_000, batch_size=1)
    target = float(score_fillers(tiny_model, template, ["4821"])[0])
    assert words and all(f"of the secret's {target:.2f}" in w for w in words if w)
    assert counts
    said = []
    tell(lambda d, t: said.append((d, t)), 1, 2, "ignored")
    assert said == [(1, 2)]


def test_a_search_runs_on_its_own_thread_count_and_restores_the_callers(tiny_model):
    import torch
    from ssviz.extraction import extract
    seen = []

    def progress(done, total):
        seen.append(torch.get_num_threads())
    before = torch.get_num_threads()
    extract(tiny_model, Template("My PIN is {d:4}"), "dijkstra", max_nodes=2000, batch_size=1, progress=progress,
            threads=1)
    assert seen and set(seen) == {1} and torch.get_num_threads() == before
