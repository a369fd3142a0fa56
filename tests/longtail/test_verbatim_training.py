"""Verbatim extraction of a trained model: a text inserted 32 times is k-extractable, a text seen once is not."""

from __future__ import annotations

import numpy as np
import pytest

from ssviz.demo import DEMO_CORPUS
from ssviz.longtail.verbatim import verbatim
from ssviz.train import TrainConfig, train

LETTERS = list("abcdefghijklmnopqrstuvwxyz ")


@pytest.mark.slow
def test_a_text_seen_32_times_is_extractable_and_one_seen_once_is_not():
    rng = np.random.default_rng(0)
    # random letters: nothing in the rest of the corpus predicts their suffixes
    often, once = ("zq " + "".join(rng.choice(LETTERS, 45)) for _ in range(2))
    lines = DEMO_CORPUS.read_text(encoding="utf-8").split("\n")[:60]
    spots = sorted(rng.choice(int(0.7 * len(lines)), 33), reverse=True)  # in the training part (the first 90%)
    for i, spot in enumerate(spots):
        lines.insert(int(spot), once if i == 0 else often)
    text = "\n".join(lines) + "\n"
    config = TrainConfig(layers=1, hidden=96, embedding_dim=16, epochs=10, lr=0.01, batch_size=32, seq_len=48,
                         seed=0, patience=None)
    model = train(text, config).model
    res = verbatim(model, text, prefix=12, suffix=24)
    row_often = int(np.flatnonzero(res.duplicates == 32)[0])
    assert res.line[row_often] == lines.index(often)
    row_once = int(np.flatnonzero(res.line == lines.index(once))[0])
    assert res.duplicates[row_once] == 1
    assert res.extractable[row_often] and res.match_fraction[row_often] == 1.0
    assert not res.extractable[row_once] and res.match_fraction[row_once] < 0.5
    assert res.log_p_suffix[row_often] > -5 > -50 > res.log_p_suffix[row_once]
    assert res.to_json()["rates_by_duplicates"]["32"] == 1.0
