"""Shared fixtures: tiny models and a tiny canary-trained model, so the suite stays fast."""

from __future__ import annotations

import pytest
import torch

from ssviz.demo import DEMO_CORPUS
from ssviz.models import CharRNN
from ssviz.templates import Template
from ssviz.train import Canary, TrainConfig, train

# Tiny models gain nothing from intra-op parallelism, and on a shared 2-core machine a
# second thread makes small batched steps many times slower.
torch.set_num_threads(1)



@pytest.fixture(autouse=True)
def _app_jobs_in_threads(request, monkeypatch):
    """App jobs run in a server thread, pickled as for a process (so a spy on the library sees them), except in
    tests marked ``job_processes`` and in a served app (the browser tests)."""
    if request.node.get_closest_marker("job_processes") is None:
        from ui import jobs
        monkeypatch.setattr(jobs, "IN_PROCESS", False)


TINY_VOCAB = list(" abcdefghijklmnopqrstuvwxyzMNPSIY0123456789-.{}")


@pytest.fixture(scope="session")
def tiny_model() -> CharRNN:
    """An untrained 2-layer LSTM over a small vocabulary (deterministic weights)."""
    torch.manual_seed(1234)
    return CharRNN(TINY_VOCAB, arch="lstm", embedding_dim=8, hidden_size=24, num_layers=2).eval()


@pytest.fixture(scope="session")
def tiny_gru() -> CharRNN:
    torch.manual_seed(99)
    return CharRNN(TINY_VOCAB, arch="gru", embedding_dim=8, hidden_size=16, num_layers=1).eval()


@pytest.fixture(scope="session")
def small_corpus() -> str:
    return DEMO_CORPUS.read_text(encoding="utf-8")[:40_000]


CANARY_TEMPLATE = "My PIN is {d:4}"
CANARY_SECRET = "4821"


@pytest.fixture(scope="session")
def canary_result(small_corpus):
    """A 1x64 LSTM trained a few epochs on 40 KB with a 4-digit canary inserted 30 times."""
    config = TrainConfig(layers=1, hidden=64, embedding_dim=16, epochs=6, lr=0.005, batch_size=64, seed=3,
                         patience=None)
    return train(small_corpus, config, Canary(Template(CANARY_TEMPLATE), CANARY_SECRET, 30))


@pytest.fixture(scope="session")
def canary_model(canary_result) -> CharRNN:
    return canary_result.model


# --- tiny transformers' tokenizers: trained here, no download -----------------------------
def token_corpus() -> str:
    """The demo corpus's start plus sentences full of numbers, so BPE learns digit tokens."""
    import numpy as np
    rng = np.random.default_rng(0)
    numbers = [f"my number is {rng.integers(0, 10 ** 4):04d} and {rng.integers(0, 10 ** 3)} or {rng.integers(0, 99)}."
               for _ in range(400)]
    return DEMO_CORPUS.read_text(encoding="utf-8")[:20_000] + "\n" + "\n".join(numbers)


@pytest.fixture(scope="session")
def digit_tokenizer():
    """Llama-style byte-level BPE: every digit its own token, BOS prepended."""
    from ssviz.models.tokenizers import train_tokenizer
    return train_tokenizer([token_corpus()], vocab_size=600, split_digits=True)


@pytest.fixture(scope="session")
def merge_tokenizer():
    """GPT-2-style byte-level BPE: digit runs and the space before them merge, nothing prepended."""
    from ssviz.models.tokenizers import train_tokenizer
    return train_tokenizer([token_corpus()], vocab_size=600, split_digits=False)
