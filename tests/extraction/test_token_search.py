"""Search over tokens: shortest path, beam, sampling, brute force and search rank on transformers.

Tiny GPT-2 / Llama models are built from configs here, over tokenizers trained
in conftest (no downloads): a Llama-style one that splits digits (the search is
exact: one path per filler) and a GPT-2-style one that merges digit runs and
``" 4"`` (many paths per filler; only canonical scores may be reported).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("transformers")

from ssviz.errors import SpaceTooLargeError, StoppedError, TemplateError
from ssviz.extraction import (
    SearchBudgetError,
    beam_search,
    brute_force,
    extract,
    load_trace,
    sample,
    search_exposure,
    shortest_path,
)
from ssviz.extraction.lattice import Lattice
from ssviz.models.base import state_nbytes
from ssviz.models.hf import HFLanguageModel, KVStatePool
from ssviz.models.pool import PoolFullError, StatePool
from ssviz.plots.search_tree import tree_nodes
from ssviz.templates import Template
from ssviz.scoring import score_fillers, score_space
from ssviz.models.tokenizers import encode, token_texts

TOL = 1e-4  # bits: batched float32 steps vs the scorer's batches
FAST = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# small spaces (<= 10^3): literals before, between and after slots; a slot right after a literal digit
TEMPLATES = ["PIN {d:2}", "My PIN is {d:3}", "call {d:2} or {d:1}.", "4{d:2} is it", "x={d:1}{d:1}!",
             "The code is {[0-3]:2}-{d:1}"]
SEEDS = [0, 1, 2]


@pytest.fixture(scope="session")
def token_models(digit_tokenizer, merge_tokenizer):
    """``token_models(kind, seed)``: a tiny untrained Llama (digits split) or GPT-2 (digits merge), cached."""
    cache: dict[tuple[str, int], HFLanguageModel] = {}

    def build(kind: str, seed: int = 0) -> HFLanguageModel:
        if (kind, seed) not in cache:
            tok = digit_tokenizer if kind == "llama" else merge_tokenizer
            # a large init range: far from uniform outputs, so wrong tokens or costs show
            cache[kind, seed] = HFLanguageModel.build(kind, tok, layers=2, heads=4, hidden=32, context=64,
                                                      seed=seed, init_range=0.3)
        return cache[kind, seed]
    return build


def costs_of(res) -> np.ndarray:
    return np.array([t["log_perplexity"] for t in res.top])


def fillers_of(res) -> list[str]:
    return [t["filler"] for t in res.top]


def assert_canonical(model, template, res) -> None:
    """Every reported filler once, at exactly the log-perplexity token scoring gives it."""
    fillers = fillers_of(res)
    assert len(set(fillers)) == len(fillers)
    if fillers:
        np.testing.assert_allclose(costs_of(res), score_fillers(model, template, fillers), atol=TOL)
        assert list(costs_of(res)) == sorted(costs_of(res))


# --- the lattice: which regime, and what it rests on --------------------------------------------------
def test_regimes_exact_for_split_digits_and_checked_for_merging(token_models):
    llama, gpt2 = token_models("llama"), token_models("gpt2")
    t = Template("My PIN is {d:3}, ok")
    exact, merging = Lattice(llama, t), Lattice(gpt2, t)
    assert exact.exact and exact.checked
    assert not merging.exact and merging.checked
    assert not Lattice(llama, Template("code {x:2}")).exact  # hex letters merge even when digits split
    # the root is a prefix of every filler's canonical tokens; merging: it stops before " 4" can merge
    for lat, model in ((exact, llama), (merging, gpt2)):
        for f in t.random_fillers(200, seed=1) + ["000", "999"]:
            assert tuple(encode(model.tokenizer, t.format(f))[:len(lat.root_units)]) == lat.root_units
    texts = token_texts(gpt2.tokenizer)
    assert "".join(texts[i] for i in merging.root_units) == "My PIN is"
    # GPT-2 spells one filler by several token paths: " 42"+"1", " 4"+"2"+"1", " "+"42"+"1", ...
    paths, stack = 0, [(merging.root_pos, "")]
    while stack:
        pos, spelled = stack.pop()
        if merging.terminal(pos):
            paths += spelled == "421"
            continue
        e = merging.edges(pos)
        stack.extend((int(n), spelled + c) for n, c in zip(e.nxt, e.chars) if "421".startswith(spelled + c))
    assert paths >= 2


def test_a_tokenizer_whose_tokens_do_not_spell_the_text_is_one_clear_error():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Lowercase()  # tokens spell "my pin", not "My PIN"
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(["my pin is 1234, my pin is 5678"] * 20, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>")
    model = HFLanguageModel.build("gpt2", hf, layers=1, heads=2, hidden=16, context=32)
    for run in (lambda: shortest_path(model, "My PIN {d:2}"), lambda: beam_search(model, "My PIN {d:2}"),
                lambda: search_exposure(model, "My PIN {d:2}", "12")):
        with pytest.raises(TemplateError, match="cannot follow this tokenizer"):
            run()
    assert brute_force(model, "My PIN {d:2}").complete  # what the message offers instead: canonical scores


# --- shortest path and rank vs enumeration -----------------------------------------------------------
@pytest.mark.slow
@FAST
@given(seed=st.sampled_from(SEEDS), text=st.sampled_from(TEMPLATES), k=st.integers(1, 6),
       batch=st.sampled_from([1, 7, 64]))
def test_split_digits_shortest_path_top_k_equals_brute_force(token_models, seed, text, k, batch):
    model, template = token_models("llama", seed), Template(text)
    lps = score_space(model, template)
    res = shortest_path(model, template, top_k=k, batch_size=batch)
    assert res.complete and res.message == ""
    np.testing.assert_allclose(costs_of(res), np.sort(lps)[:k], atol=TOL)
    np.testing.assert_allclose(lps[[template.index_of(f) for f in fillers_of(res)]], costs_of(res), atol=TOL)
    assert_canonical(model, template, res)
    assert res.nodes_expanded < template.space_size * 2  # one path per filler: no more nodes than the trie


@pytest.mark.slow
@settings(FAST, max_examples=8)  # merging: many paths per filler, the slowest property here
@given(seed=st.sampled_from(SEEDS), text=st.sampled_from(TEMPLATES), k=st.integers(1, 6),
       batch=st.sampled_from([1, 16]))
def test_merging_shortest_path_reports_canonical_scores_and_is_certified(token_models, seed, text, k, batch):
    model, template = token_models("gpt2", seed), Template(text)
    res = shortest_path(model, template, top_k=k, batch_size=batch)
    assert res.complete
    assert_canonical(model, template, res)
    # the certificate holds here (the root check passed on these templates), so it equals enumeration
    assert Lattice(model, template).checked
    np.testing.assert_allclose(costs_of(res), np.sort(score_space(model, template))[:k], atol=TOL)


@pytest.mark.slow
@FAST
@given(kind=st.sampled_from(["llama", "gpt2"]), seed=st.sampled_from(SEEDS), text=st.sampled_from(TEMPLATES),
       pick=st.integers(0, 10 ** 6))
def test_search_rank_equals_exact_rank(token_models, kind, seed, text, pick):
    model, template = token_models(kind, seed), Template(text)
    lps = score_space(model, template)
    i = pick % template.space_size
    secret = template.filler_at(i)
    res = search_exposure(model, template, secret, max_nodes=50_000, batch_size=16)
    lo = int(np.count_nonzero(lps < lps[i] - TOL)) + 1
    hi = int(np.count_nonzero(lps <= lps[i] + TOL))
    assert lo <= res.rank <= hi and res.method == "search"
    assert res.log_perplexity == pytest.approx(lps[i], abs=TOL)
    assert res.exposure == pytest.approx(np.log2(template.space_size) - np.log2(res.rank))


def test_brute_force_scores_canonical_tokens(token_models):
    for kind in ("llama", "gpt2"):
        model, template = token_models(kind), Template("call {d:2} or {d:1}.")
        lps = score_space(model, template)
        res = brute_force(model, template, top_k=5, chunk_size=300)
        assert res.complete and res.nodes_expanded == template.space_size
        np.testing.assert_allclose(costs_of(res), np.sort(lps)[:5], atol=TOL)
        again = extract(model, template, "brute", top_k=5)  # other chunks: other float32 batches
        assert fillers_of(again) == fillers_of(res)
        np.testing.assert_allclose(costs_of(again), costs_of(res), atol=TOL)


# --- beam and sampling --------------------------------------------------------------------------------
@pytest.mark.slow
@FAST
@given(kind=st.sampled_from(["llama", "gpt2"]), seed=st.sampled_from(SEEDS), text=st.sampled_from(TEMPLATES),
       width=st.integers(1, 30), s=st.integers(0, 50))
def test_beam_and_sampling_report_canonical_scores_never_better_than_exact(token_models, kind, seed, text, width,
                                                                         s):
    model, template = token_models(kind, seed), Template(text)
    best = score_space(model, template).min()
    beam = beam_search(model, template, beam_width=width, top_k=4)
    drawn = sample(model, template, samples=40, seed=s, top_k=4, chunk_size=16)
    for res in (beam, drawn):
        assert res.complete and res.found is not None and len(res.found) == template.filler_length
        assert_canonical(model, template, res)
        assert res.log_perplexity >= best - TOL


def test_wide_beam_is_exact_when_tokens_split(token_models):
    model, template = token_models("llama", 1), Template("call {d:2} or {d:1}.")
    lps = score_space(model, template)
    res = beam_search(model, template, beam_width=template.space_size, top_k=5)
    np.testing.assert_allclose(costs_of(res), np.sort(lps)[:5], atol=TOL)


def test_narrow_beam_can_miss_the_best_filler(token_models):
    template, misses = Template("My PIN is {d:3}"), 0
    for seed in SEEDS:
        for kind in ("llama", "gpt2"):
            model = token_models(kind, seed)
            best = shortest_path(model, template)
            greedy = beam_search(model, template, beam_width=1)
            assert greedy.log_perplexity >= best.log_perplexity - TOL
            misses += greedy.found != best.found
    assert misses > 0


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_beam_and_sampling_are_reproducible_and_seeded(token_models, kind):
    model, template = token_models(kind, 2), Template("The code is {[0-3]:2}-{d:1}")
    a = sample(model, template, samples=12, seed=5, top_k=5, chunk_size=5)
    assert sample(model, template, samples=12, seed=5, top_k=5, chunk_size=5).top == a.top
    assert any(sample(model, template, samples=12, seed=s, top_k=5, chunk_size=5).top != a.top for s in range(6, 12))
    assert a.nodes_expanded >= 12  # at least one token read per sample
    b = beam_search(model, template, beam_width=4, top_k=3)
    assert beam_search(model, template, beam_width=4, top_k=3).top == b.top
    d = shortest_path(model, template, top_k=3, batch_size=5)
    assert shortest_path(model, template, top_k=3, batch_size=5).top == d.top


# --- budgets, stop, memory ------------------------------------------------------------------------------
class StopAfter:
    def __init__(self, n: int):
        self.n = n

    def __call__(self) -> bool:
        self.n -= 1
        return self.n < 0


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_stop_and_budgets_give_partial_results(token_models, kind):
    model, template = token_models(kind), Template("call {d:2} or {d:1}.")
    res = shortest_path(model, template, top_k=3, max_nodes=4, batch_size=2)
    assert not res.complete and "node budget" in res.message and res.nodes_expanded <= 4
    assert_canonical(model, template, res)
    res = shortest_path(model, template, top_k=3, stop=StopAfter(3), batch_size=2)
    assert not res.complete and "stopped" in res.message
    res = shortest_path(model, template, top_k=500, max_memory_mb=0.01, batch_size=8)
    assert not res.complete and "memory budget" in res.message
    assert_canonical(model, template, res)
    res = shortest_path(model, template, top_k=3, max_seconds=1e-9)
    assert not res.complete and "time budget" in res.message
    res = beam_search(model, template, beam_width=5, stop=StopAfter(1))
    assert not res.complete and "stopped" in res.message and "token step" in res.message
    res = sample(model, template, samples=100, chunk_size=10, stop=StopAfter(3), top_k=3)
    assert not res.complete and "after 30 of 100 samples" in res.message
    assert_canonical(model, template, res)
    res = brute_force(model, template, chunk_size=100, stop=StopAfter(2), top_k=3)
    assert not res.complete and "after 200 of 1,000" in res.message
    with pytest.raises(SearchBudgetError) as err:
        search_exposure(model, template, "058", max_nodes=2, batch_size=1)
    assert err.value.rank_lower_bound >= 1 and err.value.exposure_upper_bound <= np.log2(1000)
    assert "058" not in str(err.value)  # never the secret's value in a message
    with pytest.raises(StoppedError):
        search_exposure(model, template, "999", stop=StopAfter(1), batch_size=1)


def test_a_model_with_non_finite_outputs_is_named_not_searched(digit_tokenizer, merge_tokenizer):
    from ssviz.errors import NonFiniteError
    for kind, tok in (("llama", digit_tokenizer), ("gpt2", merge_tokenizer)):
        model = HFLanguageModel.build(kind, tok, layers=1, heads=2, hidden=16, context=32)
        with torch.no_grad():
            model.model.get_output_embeddings().weight.fill_(3e38)  # finite weights, infinite logits
        runs = [(shortest_path, {}), (beam_search, {}), (sample, {"samples": 5}), (brute_force, {}),
                (search_exposure, {"secret": "12"})]
        for run, options in runs:
            with pytest.raises(NonFiniteError, match="NaN or infinite"):
                run(model, "PIN {d:2}", **options)


def test_beam_memory_check_counts_the_kv_cache(token_models, monkeypatch):
    """A beam whose KV caches exceed the machine is refused before any step, from the model's ``row_bytes``."""
    model, template = token_models("llama"), Template("My PIN is {d:6}")
    monkeypatch.setattr("ssviz.memory.available_bytes", lambda: 1 << 30)
    width = 150_000  # ~0.1 GB without the cache, ~2 GB with it
    assert width * model.row_bytes(12) > 1 << 30
    with pytest.raises(SpaceTooLargeError, match="beam of 150,000"):
        beam_search(model, template, beam_width=width)


def test_state_nbytes_counts_kv_caches(token_models):
    model = token_models("llama")
    ids = torch.randint(3, 100, (2, 5))
    with torch.inference_mode():
        _, s5 = model.run(ids, model.initial_state(2))
        _, s6 = model.step(ids[:, 0], s5)
    assert state_nbytes(s5) == s5.nbytes > 0
    assert state_nbytes(s6) * 5 == state_nbytes(s5) * 6  # grows with the tokens read
    assert state_nbytes(model.initial_state(1)) == 0


def test_kv_pool_keeps_rows_per_length_and_gathers_exactly(token_models):
    model = token_models("llama")
    ids = torch.randint(3, 100, (3, 6))
    assert isinstance(model.state_pool(1 << 20), KVStatePool)
    with torch.inference_mode():
        _, s3 = model.run(ids[:, :3], model.initial_state(3))
        _, s5 = model.run(ids[:, :5], model.initial_state(3))
        pool = KVStatePool(model, 1 << 24, capacity=2)  # small: appends must grow the buffers
        r3 = pool.append(s3)
        r5 = pool.append(s5)
        pool.append(s3)
        root = pool.append(model.initial_state(1))
        assert pool.size == 10 and pool.bytes_used == 2 * s3.nbytes + s5.nbytes
        picks = torch.tensor([2, 0, 0])
        got, _ = model.step(ids[picks, 5], pool.gather(r5[picks]))
        want, _ = model.step(ids[picks, 5], model.select_state(s5, picks))
        assert torch.equal(got, want)
        got3, _ = model.step(ids[:, 3], pool.gather(r3))
        want3, _ = model.step(ids[:, 3], s3)
        assert torch.equal(got3, want3)
        empty = pool.gather(torch.cat([root, root]))
        assert empty.cache is None and empty.batch == 2 and empty.length == 0
        with pytest.raises(ValueError, match="different token lengths"):
            pool.gather(torch.tensor([int(r3[0]), int(r5[0])]))
        small = KVStatePool(model, s3.nbytes // 3 + 1)
        small.append(model.select_state(s3, torch.tensor([0])))  # the first rows always fit
        with pytest.raises(PoolFullError):
            small.append(s3)


def test_the_counting_wrapper_answers_as_the_model_it_wraps(token_models):
    """Searches run through a counting wrapper: every interface member must be the transformer's own."""
    from ssviz.extraction.counting import CountingModel
    model = token_models("gpt2")
    counter = CountingModel(model)
    text = "My PIN is 123"
    assert counter.unit_name == "token" and counter.max_positions == model.max_positions
    assert counter.encode(text) == model.encode(text) and counter.encode_batch([text]) == [model.encode(text)]
    assert counter.decode(model.encode(text)) == model.decode(model.encode(text))
    assert counter.unit_texts() == model.unit_texts() and counter.unit_text(5) == model.unit_text(5)
    assert type(counter.template_units(Template("PIN {d:2}"))) is type(model.template_units(Template("PIN {d:2}")))
    assert counter.row_bytes(12, 2) == model.row_bytes(12, 2) and counter.description == model.description
    assert isinstance(counter.state_pool(1 << 20), KVStatePool)
    assert counter.trie_stepper().rows == model.trie_stepper().rows


def test_char_models_keep_the_generic_pool(tiny_model):
    assert isinstance(tiny_model.state_pool(1 << 20), StatePool)


# --- traces --------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["llama", "gpt2"])
@pytest.mark.parametrize("algorithm,options", [("dijkstra", {"batch_size": 4}), ("beam", {"beam_width": 6}),
                                               ("sampling", {"samples": 30, "chunk_size": 10}), ("brute", {})])
def test_traces_over_tokens_replay(token_models, kind, algorithm, options):
    model, template = token_models(kind), Template("PIN {d:2}, ok")
    res = extract(model, template, algorithm, top_k=3, trace=True, max_trace_children=500, **options)
    trace = load_trace(json.dumps(res.trace))  # JSON round trip, validated
    assert trace["unit"] == "token" and trace["separator"] not in template.characters
    sep = trace["separator"]
    texts = token_texts(model.tokenizer)
    lattice = Lattice(model, template)
    assert trace["prefix_bits"] == pytest.approx(lattice.prefix_bits)
    costs = {"": trace["prefix_bits"]}
    for step in trace["steps"]:
        costs.update((e["node"], e["cost"]) for e in step["expanded"])
        for c in step["children"]:
            assert c["node"] == (f"{c['parent']}{sep}{c['token']}" if c["parent"] else c["token"])
            assert texts[c["token_id"]] == c["token"] == c["char"] and c["edge"] >= 0
            if algorithm != "brute":  # a child's parent was expanded in this step or before
                assert c["cost"] == pytest.approx(costs[c["parent"]] + c["edge"], abs=1e-9)
            if not lattice.exact:  # nodes spell the text from the root's position on
                spelled = c["node"].replace(sep, "")
                assert all(ch in lattice.units.allowed[lattice.root_pos + i] for i, ch in enumerate(spelled))
        for f in step["found"]:
            assert f["log_perplexity"] == pytest.approx(float(score_fillers(model, template, [f["filler"]])[0]),
                                                        abs=TOL)
    assert trace["result"]["top"] == res.top and trace["steps"]
    if algorithm != "brute":
        assert any(step["children"] for step in trace["steps"])
    nodes = tree_nodes(trace, len(trace["steps"]) - 1, res.found)
    assert any(n["node"] == "" for n in nodes)
