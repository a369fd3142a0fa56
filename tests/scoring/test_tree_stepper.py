"""The transformer trie stepper (shared-prefix attention, lazy head) scores as the generic one-cache-per-node
stepper does, for GPT-2- and Llama-style models, and holds big levels in one chunk."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from ssviz.models.base import TrieStepper
from ssviz.models.hf import HFLanguageModel
from ssviz.models.tree import ATTENTION, TransformerTrieStepper
from ssviz.scoring import TrieScorer, score_texts
from ssviz.templates import Template


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def lm(request, digit_tokenizer):
    return HFLanguageModel.build(request.param, digit_tokenizer, layers=2, heads=4, hidden=32, seed=3,
                                 init_range=0.3)


@pytest.mark.slow
@pytest.mark.parametrize("text", ["My PIN is {d:3}", "My PIN is {d:2}-{d:1} ok."])
def test_tree_stepper_equals_generic_and_naive(lm, text, monkeypatch):
    t = Template(text)
    assert isinstance(lm.trie_stepper(), TransformerTrieStepper)
    fast = TrieScorer(lm, t).score_range(0, t.space_size)
    monkeypatch.setattr(lm, "trie_stepper", lambda: TrieStepper(lm, rows=None))
    generic = TrieScorer(lm, t).score_range(0, t.space_size)
    naive = score_texts(lm, [t.format(f) for f in t.digits_to_fillers(t.digits_of_indices(np.arange(t.space_size)))])
    assert np.abs(fast - generic).max() < 1e-3 and np.abs(fast - naive).max() < 1e-3
    assert lm.model.config._attn_implementation != ATTENTION  # restored after every call


def test_children_states_and_lazy_log_probs(lm):
    stepper = lm.trie_stepper()
    ids = torch.tensor([lm.encode("My PIN is")])
    lp_root, state = lm.run(ids, lm.initial_state(1))
    root = stepper.root(state)
    tok = torch.tensor(lm.encode("My PIN is 12")[ids.shape[1]:ids.shape[1] + 1] * 3)
    lp, kids = stepper.children(root, torch.zeros(3, dtype=torch.long), tok)
    ref, _ = lm.run(torch.cat([ids.expand(3, -1), tok[:, None]], 1), lm.initial_state(3))
    cols = torch.tensor([5, 7, 11])
    assert torch.allclose(lp[torch.arange(3), cols], ref[torch.arange(3), -1, cols], atol=1e-5)
    assert kids.batch == 3 and kids.nbytes > 0
    assert stepper.children(root, torch.zeros(3, dtype=torch.long), tok, keep=False)[1] is None


def test_a_level_of_thousands_fits_one_chunk(lm):
    scorer = TrieScorer(lm, Template("My PIN is {d:5}"), chunk_size=1 << 16)
    assert scorer.chunk == 1 << 16  # the prefix's keys and values are held once, not per row


def test_other_threads_attend_as_usual_meanwhile(lm):
    """A forward pass in another thread while a tree step runs uses the model's own attention."""
    ids = torch.tensor([lm.encode("My PIN is 1234")])
    with torch.inference_mode():
        want = lm.model(input_ids=ids).logits
    from ssviz.models.tree import _Swapped
    got = []
    with _Swapped(lm.model.config, [None] * 8):
        th = threading.Thread(target=lambda: got.append(lm.model(input_ids=ids).logits.detach()))
        th.start()
        th.join()
    assert torch.allclose(got[0], want, atol=1e-5)
