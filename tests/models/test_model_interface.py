"""A model that only implements the interface works with every computation (here: scoring and exposure)."""

import math

import numpy as np
import pytest
import torch

from ssviz import exposure
from ssviz.models import LanguageModel, Vocab
from ssviz.scoring import score_fillers, score_space, score_texts
from ssviz.templates import Template


class BigramModel(LanguageModel):
    """P(next | current) from a fixed table; the state is the last token read."""

    def __init__(self, chars, seed=0):
        self.vocab = Vocab(chars)
        g = torch.Generator().manual_seed(seed)
        self.table = torch.log_softmax(torch.randn(len(chars), len(chars), generator=g) * 2, dim=-1)

    def initial_state(self, batch_size):
        return torch.zeros(batch_size, dtype=torch.long)

    def step(self, tokens, state):
        return self.table[tokens], tokens.clone()

    def select_state(self, state, index):
        return state[index]


@pytest.fixture(scope="module")
def bigram():
    return BigramModel(list("My PINis0123456789"), seed=3)


def by_hand(model, text):
    ids = model.vocab.encode(text)
    return -sum(float(model.table[a, b]) for a, b in zip(ids, ids[1:])) / math.log(2)


def test_default_run_and_scorer_follow_the_interface(bigram):
    t = Template("My PIN is {d:3}")
    fillers = t.random_fillers(50, seed=2)
    expected = [by_hand(bigram, t.format(f)) for f in fillers]
    assert score_texts(bigram, [t.format(f) for f in fillers]) == pytest.approx(expected, abs=1e-9)
    assert score_fillers(bigram, t, fillers, chunk_size=8) == pytest.approx(expected, abs=1e-6)


def test_exact_exposure_of_the_bigram_argmax(bigram):
    t = Template("My PIN is {d:3}")
    lps = score_space(bigram, t)
    best = t.filler_at(int(np.argmin(lps)))
    res = exposure.measure(bigram, t, best, "exact")
    ties = int((lps <= lps.min()).sum())
    assert res.rank == ties and res.exposure == pytest.approx(math.log2(1000 / ties))
