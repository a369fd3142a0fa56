import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssviz.errors import SpaceTooLargeError, StoppedError, TemplateError, VocabularyError
from ssviz.scoring import log_perplexity, score_fillers, score_space, score_texts
from ssviz.templates import Template


@pytest.mark.parametrize("text", ["My SSN is {d:3}-{d:2}-{d:4}", "My PIN is {d:2}.", "a {[xyz]:3} b {d:2}"])
@pytest.mark.parametrize("chunk", [7, 1000])
def test_fast_scorer_equals_naive(tiny_model, text, chunk):
    t = Template(text)
    fillers = t.random_fillers(300, seed=5) + t.random_fillers(20, seed=5)  # duplicates too
    fast = score_fillers(tiny_model, t, fillers, chunk_size=chunk)
    naive = score_texts(tiny_model, [t.format(f) for f in fillers])
    assert np.abs(fast - naive).max() < 1e-4


def test_fast_scorer_gru(tiny_gru):
    t = Template("My PIN is {d:4}")
    fillers = t.random_fillers(100, seed=1)
    assert np.abs(score_fillers(tiny_gru, t, fillers) - score_texts(tiny_gru, [t.format(f) for f in fillers])
                  ).max() < 1e-4


def test_score_space_is_indexed_by_filler_number(tiny_model):
    t = Template("My PIN is {d:3}")
    lps = score_space(tiny_model, t, chunk_size=64)
    naive = score_texts(tiny_model, [t.format(t.filler_at(i)) for i in range(1000)])
    assert np.abs(lps - naive).max() < 1e-4


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 400), st.lists(st.integers(0, 999), min_size=1, max_size=40))
def test_chunking_never_changes_results(tiny_model, chunk, idx):
    t = Template("My PIN is {d:3}")
    fillers = [t.filler_at(i) for i in idx]
    ref = score_texts(tiny_model, [t.format(f) for f in fillers])
    assert np.abs(score_fillers(tiny_model, t, fillers, chunk_size=chunk) - ref).max() < 1e-4


def test_log_perplexity_definition(tiny_model):
    import math

    import torch
    text = "my pin"
    ids = tiny_model.vocab.encode(text)
    state = tiny_model.initial_state(1)
    total = 0.0
    with torch.no_grad():
        for a, b in zip(ids, ids[1:]):
            lp, state = tiny_model.step(torch.tensor([a]), state)
            total -= float(lp[0, b]) / math.log(2)
    assert log_perplexity(tiny_model, text) == pytest.approx(total, abs=1e-5)
    assert log_perplexity(tiny_model, "m") == 0.0


def test_out_of_vocabulary_character_is_named(tiny_model):
    with pytest.raises(VocabularyError, match="'Z'"):
        score_texts(tiny_model, ["aZb"])
    with pytest.raises(TemplateError, match="lacks"):
        score_fillers(tiny_model, Template("Zip {d:2}"), ["12"])


def test_space_too_large(tiny_model):
    with pytest.raises(SpaceTooLargeError, match="more than the limit"):
        score_space(tiny_model, Template("My PIN is {d:9}"))


def test_stop_flag(tiny_model):
    with pytest.raises(StoppedError):
        score_space(tiny_model, Template("My PIN is {d:3}"), chunk_size=10, stop=lambda: True)
    seen = []
    score_space(tiny_model, Template("My PIN is {d:3}"), chunk_size=250, progress=lambda d, n: seen.append((d, n)))
    assert seen == [(250, 1000), (500, 1000), (750, 1000), (1000, 1000)]


@pytest.mark.parametrize("text", ["My PIN is {d:3}", "a {[xyz]:2}-{d:2} b", "My SSN is {d:3}-{d:2}-{d:4}"])
def test_fast_lstm_path_equals_generic_stepping(tiny_model, text):
    """The LSTM fast path (shared recurrent projections, a vocabulary table for the first layer) gives the
    generic select-then-step path's numbers up to float rounding, literal characters and fused tails included."""
    from ssviz import scoring
    from ssviz.models.base import TrieStepper
    from ssviz.models.rnn import LSTMTrieStepper
    assert isinstance(tiny_model.trie_stepper(), LSTMTrieStepper)
    t = Template(text)
    digits = t.fillers_to_digits(t.random_fillers(200, seed=3))
    fast = scoring.TrieScorer(tiny_model, t)
    generic = scoring.TrieScorer(tiny_model, t)
    generic.stepper = TrieStepper(tiny_model, rows=16)
    fast.step_rows = generic.step_rows = 16
    import torch
    with torch.inference_mode():
        assert np.abs(fast.score_digits(digits) - generic.score_digits(digits)).max() < 1e-4


def test_fast_lstm_path_only_for_plain_lstms_in_eval_mode(tiny_model, tiny_gru):
    from ssviz.models.rnn import LSTMTrieStepper
    assert not isinstance(tiny_gru.trie_stepper(), LSTMTrieStepper)
    tiny_model.train()
    try:
        assert not isinstance(tiny_model.trie_stepper(), LSTMTrieStepper)
    finally:
        tiny_model.eval()
