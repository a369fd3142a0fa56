"""The blind baseline flags a constructed distribution shift and stays quiet on a random split of one source."""

from __future__ import annotations

import random

import numpy as np
import pytest

from ssviz.demo import DEMO_CORPUS
from ssviz.membership.blind import blind_baseline, blind_scores, shift_message, shift_warning

N = 80
ATTACKS = {"loss": {"auc": 0.75}, "mink": {"auc": 0.66}, "lira": {"auc": None}}  # a real but modest attack


def docstrings(n: int, seed: int) -> list[str]:
    lines = [ln for ln in DEMO_CORPUS.read_text(encoding="utf-8").split("\n") if ln.strip()]
    return random.Random(seed).sample(lines, n)


def mails(n: int, seed: int) -> list[str]:
    """Another source: business-mail sentences (the synthetic Enron generator's), filled at random."""
    from ssviz.enron.synthetic import DAYS, PRODUCTS, REGIONS, SENTENCES
    rng = random.Random(seed)
    words = dict(other="Mark", company="Dynegy", region=rng.choice(REGIONS), product=rng.choice(PRODUCTS),
                 day=rng.choice(DAYS), hour="3pm", bs="streamline our trading")
    return [" ".join(rng.choice(SENTENCES).format(**words) for _ in range(rng.randint(1, 4))) for _ in range(n)]


def labels(n_in: int, n_out: int) -> np.ndarray:
    return np.r_[np.ones(n_in, bool), np.zeros(n_out, bool)]


@pytest.mark.slow
def test_a_constructed_shift_is_flagged():
    texts = docstrings(N, 0) + mails(N, 1)
    blind = blind_baseline(texts, labels(N, N), seed=0)
    assert blind["auc"] > 0.95
    assert shift_warning(blind, ATTACKS)
    assert "differ in distribution" in shift_message(blind, ATTACKS)
    assert "do not measure memorization" in shift_message(blind, ATTACKS)


@pytest.mark.slow
def test_a_random_split_of_one_source_is_not_flagged():
    aucs = []
    for seed in (2, 3, 4):  # three random splits: none flagged, the AUCs scattered around chance
        blind = blind_baseline(docstrings(2 * N, seed), labels(N, N), seed=0)
        aucs.append(blind["auc"])
        assert blind["auc_ci"][1] < 0.72
        assert not shift_warning(blind, ATTACKS)
        assert "stays below the best attack (loss, AUC 0.750)" in shift_message(blind, ATTACKS)
    assert 0.4 < np.mean(aucs) < 0.6


def test_out_of_fold_scores_are_seeded_and_never_see_their_own_label():
    texts = ["alpha beta"] * 6 + ["gamma delta"] * 6
    y = labels(6, 6)
    a, b = blind_scores(texts, y, seed=3), blind_scores(texts, y, seed=3)
    assert np.array_equal(a, b) and len(a) == 12
    with pytest.raises(Exception, match="at least 2 members"):
        blind_scores(["a", "b", "c"], labels(1, 2))
