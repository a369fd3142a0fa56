"""Guard rails: every public computation gives the same answer on every kind of model.

One fixture yields, in turn, a character LSTM, a character GRU, a minimal model that
implements only the :class:`~ssviz.models.LanguageModel` interface, a Llama-style
transformer (digits split) and a GPT-2-style one (digit runs merge). Each oracle
compares a fast path with a slow, obviously right one on a 1,000-filler space, so a
refactor that breaks one kind of model shows up here whichever code path it touched.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ssviz import exposure, extraction, scoring
from ssviz.executor import InlineExecutor, LocalExecutor
from ssviz.errors import SsvizError
from ssviz.models import CharRNN, LanguageModel, Vocab
from ssviz.models.hf import HFLanguageModel
from ssviz.templates import Template

from tests.conftest import TINY_VOCAB

KINDS = ["lstm", "gru", "minimal", "llama", "gpt2"]
TOKEN_KINDS = ("llama", "gpt2")
TEMPLATE = Template("My PIN is {d:3}")
TOP_K = 5
TOL = 1e-4  # bits: batched float32 steps in different orders round differently


class ElmanModel(LanguageModel):
    """A plain-torch Elman RNN with only the three required methods: the state is a tensor [B, H]."""

    def __init__(self, chars, hidden: int = 12, seed: int = 0):
        self.vocab = Vocab(chars)
        g = torch.Generator().manual_seed(seed)
        v = len(chars)
        self.embed = torch.randn(v, hidden, generator=g)
        self.recur = torch.randn(hidden, hidden, generator=g) / math.sqrt(hidden)
        self.head = torch.randn(hidden, v, generator=g) * 1.5

    def initial_state(self, batch_size: int) -> torch.Tensor:
        return torch.zeros(batch_size, self.embed.shape[1])

    def step(self, tokens: torch.Tensor, state: torch.Tensor):
        h = torch.tanh(state @ self.recur + self.embed[tokens])
        return torch.log_softmax(h @ self.head, dim=-1), h

    def select_state(self, state: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return state[index]


@pytest.fixture(scope="module", params=KINDS)
def any_model(request) -> LanguageModel:
    """Each kind of model ssviz measures, tiny, untrained, seeded (the same weights on every run)."""
    kind = request.param
    if kind in ("lstm", "gru"):
        torch.manual_seed(5 if kind == "lstm" else 6)
        return CharRNN(TINY_VOCAB, arch=kind, embedding_dim=8, hidden_size=16, num_layers=1).eval()
    if kind == "minimal":
        return ElmanModel(TINY_VOCAB, seed=7)
    pytest.importorskip("transformers")
    from ssviz.models.hf import HFLanguageModel
    tokenizer = request.getfixturevalue("digit_tokenizer" if kind == "llama" else "merge_tokenizer")
    # a large init range: outputs far from uniform, so wrong fillers or costs show (no near-ties)
    return HFLanguageModel.build(kind, tokenizer, layers=1, heads=2, hidden=16, context=32, seed=3,
                                 init_range=0.3)


@pytest.fixture(scope="module")
def space_scores(any_model) -> np.ndarray:
    """Every filler's log-perplexity from the naive reference: each full text run from the initial state."""
    texts = [TEMPLATE.format(TEMPLATE.filler_at(i)) for i in range(TEMPLATE.space_size)]
    return scoring.score_texts(any_model, texts)


def fillers_of(result) -> list[str]:
    return [t["filler"] for t in result.top]


def costs_of(result) -> np.ndarray:
    return np.array([t["log_perplexity"] for t in result.top])


def filler_ranked(scores: np.ndarray, position: int) -> str:
    """The filler at 0-based ``position`` in increasing log-perplexity."""
    return TEMPLATE.filler_at(int(np.argsort(scores, kind="stable")[position]))


# --- scoring -------------------------------------------------------------------------------------
def test_fast_scoring_equals_naive_scoring(any_model, space_scores):
    """The trie / token scorers share prefixes between fillers; the numbers must not change."""
    np.testing.assert_allclose(scoring.score_space(any_model, TEMPLATE), space_scores, rtol=1e-6, atol=TOL)
    sample = TEMPLATE.random_fillers(50, seed=1)
    expected = space_scores[[TEMPLATE.index_of(f) for f in sample]]
    np.testing.assert_allclose(scoring.score_fillers(any_model, TEMPLATE, sample), expected, rtol=1e-6, atol=TOL)
    assert np.ptp(space_scores) > 1.0  # the model is not uniform, so the comparison means something


# --- extraction ----------------------------------------------------------------------------------
def test_shortest_path_top_k_equals_brute_force(any_model, space_scores):
    """Dijkstra's certified top-k is the enumeration's top-k, in the same order, at the same costs."""
    best = extraction.shortest_path(any_model, TEMPLATE, top_k=TOP_K)
    brute = extraction.brute_force(any_model, TEMPLATE, top_k=TOP_K)
    assert best.complete and brute.complete
    np.testing.assert_allclose(costs_of(best), costs_of(brute), rtol=1e-6, atol=TOL)
    true = np.sort(space_scores)[:TOP_K + 1]
    np.testing.assert_allclose(costs_of(brute), true[:TOP_K], rtol=1e-6, atol=TOL)
    assert np.diff(true).min() > 10 * TOL  # no ties among these models' top fillers: order is defined
    assert fillers_of(best) == fillers_of(brute) == [filler_ranked(space_scores, i) for i in range(TOP_K)]
    assert best.found == brute.found == fillers_of(brute)[0]


@pytest.mark.parametrize("pick", ["fifth", "random"])
def test_search_rank_equals_exact_rank(any_model, space_scores, pick):
    """Best-first enumeration certifies the same rank that enumerating the whole space counts."""
    if pick == "fifth":
        secret = filler_ranked(space_scores, 4)
    else:  # a random filler among the 200 most likely, so the search stays cheap
        secret = filler_ranked(space_scores, int(np.random.default_rng(0).integers(20, 200)))
    exact = exposure.measure(any_model, TEMPLATE, secret, "exact")
    searched = extraction.search_exposure(any_model, TEMPLATE, secret)
    assert exact.rank == int(np.count_nonzero(space_scores <= space_scores[TEMPLATE.index_of(secret)]))
    assert searched.rank == exact.rank > 1
    assert searched.exposure == pytest.approx(exact.exposure, abs=1e-9)
    assert searched.log_perplexity == pytest.approx(exact.log_perplexity, rel=1e-6, abs=TOL)


def test_beam_and_sampling_report_valid_fillers_at_their_canonical_cost(any_model):
    """Heuristics may miss the best fillers, but what they report must be real fillers at their true cost."""
    beam = extraction.beam_search(any_model, TEMPLATE, beam_width=20, top_k=TOP_K)
    drawn = extraction.sample(any_model, TEMPLATE, samples=200, seed=0, top_k=TOP_K)
    for result in (beam, drawn):
        fillers = fillers_of(result)
        assert result.complete and len(fillers) == TOP_K == len(set(fillers))
        assert all(len(f) == 3 and f.isdigit() and TEMPLATE.normalize(f) == f for f in fillers)
        np.testing.assert_allclose(costs_of(result), scoring.score_fillers(any_model, TEMPLATE, fillers),
                                   rtol=1e-6, atol=TOL)
        assert list(costs_of(result)) == sorted(costs_of(result))
        assert result.found == fillers[0]


# --- sharded exact exposure ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def executor():
    with LocalExecutor(workers=1) as ex:
        yield ex


@pytest.mark.slow
def test_sharded_exact_equals_plain_exact(any_model, space_scores, executor, request):
    """Shards scored by worker processes add up to the in-memory enumeration; a model that cannot be
    written to a file for the workers is refused in one line, and is sharded in this process instead."""
    if not isinstance(any_model, (CharRNN, HFLanguageModel)):
        with pytest.raises(SsvizError, match="cannot be saved"):
            exposure.measure(any_model, TEMPLATE, "123", "exact", executor=executor, shard_size=250)
        executor = InlineExecutor()
    secret = filler_ranked(space_scores, 9)
    chunk, _ = exposure.shard_plan(TEMPLATE.space_size, shard_size=250)
    plain = exposure.measure(any_model, TEMPLATE, secret, "exact", chunk_size=chunk)
    sharded = exposure.measure(any_model, TEMPLATE, secret, "exact", executor=executor, shard_size=250)
    assert sharded.shards["shards"] == 4
    assert sharded.rank == plain.rank == 10
    assert sharded.exposure == pytest.approx(plain.exposure, abs=1e-9)
    assert sharded.log_perplexity == pytest.approx(plain.log_perplexity, rel=1e-6, abs=TOL)
    assert sharded.histogram == plain.histogram


def test_reading_equals_step_by_step_distributions(any_model):
    """The per-text reader's log-probabilities, top-choice flags, distribution moments and next-unit
    distribution equal a step-by-step computation from the model's own `step`."""
    from ssviz.scoring import read_texts
    texts = ["My PIN is 4821.", "a", "My PIN is 0000. and more"]
    readings = read_texts(any_model, texts, stats=True, last=True)
    for text, r in zip(texts, readings):
        ids = any_model.encode(text)
        assert list(r.ids) == ids
        state = any_model.initial_state(1)
        rows = []
        with torch.inference_mode():
            for u in ids:
                lp, state = any_model.step(torch.tensor([u]), state)
                rows.append(lp[0].double())
        for i in range(len(ids) - 1):
            dist = rows[i]
            assert r.logp[i] == pytest.approx(float(dist[ids[i + 1]]), abs=1e-4)
            assert bool(r.correct[i]) == (int(dist.argmax()) == ids[i + 1])
            mu = float((dist.exp() * dist).sum())
            var = float((dist.exp() * dist ** 2).sum()) - mu ** 2
            assert r.mu[i] == pytest.approx(mu, abs=1e-3)
            assert r.sigma[i] == pytest.approx(max(var, 0) ** 0.5, abs=1e-3)
        np.testing.assert_allclose(r.last, rows[-1].numpy(), atol=1e-4)
        assert r.bits == pytest.approx(-sum(float(rows[i][ids[i + 1]]) for i in range(len(ids) - 1)) / np.log(2),
                                       abs=1e-3)
