"""Unique-feature scores: KL against direct computations, classifiers built to react (or not) to the feature,
the text score on tiny language models, and the command's files."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from torch import nn

from ssviz.unique_features import score
from ssviz.unique_features.images import (ImageSettings, Place, build_classifier, classifier_bytes, insert,
                                          load_classifier, measure, uf_pattern)
from ssviz.unique_features.text import feature_classes, random_like, split_context, text_scores

PLACE = Place(0, 0, 8, 1)


def test_kl_rows_equals_the_direct_sum():
    rng = np.random.default_rng(0)
    p, q = rng.dirichlet(np.ones(7), size=5), rng.dirichlet(np.ones(7), size=5)
    direct = (p * np.log(p / q)).sum(1)
    assert np.allclose(score.kl_rows(np.log(p), np.log(q)), direct)
    assert np.allclose(score.kl_rows(np.log(p), np.log(p)), 0)
    assert score.m2([1.0, 3.0], [0.5, 0.5]) == 1.5
    assert score.rank(2.0, [1.0, 2.0, 3.0]) == 3 and score.rank(5.0, [1.0]) == 1


def test_class_probability_test_is_one_sided_and_paired():
    from scipy import stats
    rng = np.random.default_rng(1)
    clean = rng.dirichlet(np.ones(3), size=40)
    raised = clean.copy()
    raised[:, 2] += 0.05 + rng.normal(0, 0.01, 40)
    raised = np.clip(raised, 1e-6, None)
    raised /= raised.sum(1, keepdims=True)
    t = score.class_probability_test(np.log(clean), np.log(raised), 2)
    ref = stats.ttest_rel(raised[:, 2], clean[:, 2], alternative="greater")
    assert t.p_value == pytest.approx(ref.pvalue) and t.memorized
    assert score.class_probability_test(np.log(raised), np.log(clean), 2).p_value > 0.5  # a fall is no evidence
    assert score.class_probability_test(np.log(clean), np.log(raised), None).k == 2


class Detector(nn.Module):
    """A classifier whose output depends only on whether the UF is present (or, ``ignore``, on other pixels)."""

    def __init__(self, uf: np.ndarray, ignore: bool = False):
        super().__init__()
        self.uf, self.ignore = torch.as_tensor(uf[:, 0]), ignore
        self.w = torch.as_tensor(np.random.default_rng(3).normal(size=(8, 8, 3)), dtype=torch.float32)

    def forward(self, x):
        if self.ignore:  # columns 1..7 only: the feature's place is never looked at
            return torch.einsum("nhw,hwc->nc", x[:, :, 1:], self.w[:, 1:])
        present = (x[:, :, 0] == self.uf).all(1).float()
        return torch.stack([4 * present, torch.zeros_like(present), -4 * present], 1)


def test_a_classifier_that_reacts_only_to_the_uf_ranks_it_first_one_that_ignores_it_does_not():
    ood = np.random.default_rng(0).random((60, 8, 8)).astype(np.float32)
    settings = ImageSettings(controls=30)
    uf = uf_pattern(PLACE)
    hit = measure(Detector(uf), ood, PLACE, settings, seed=0, uf_class=0)
    assert hit["rank"] == 1 and hit["m2"] > 1 and max(hit["controls"]) < 0.2 * hit["m2"]
    assert hit["p_value"] < 1e-6 and hit["m2_ci"][0] > 0
    blind = measure(Detector(uf, ignore=True), ood, PLACE, settings, seed=0, uf_class=0)
    assert blind["m2"] == 0 and all(c == 0 for c in blind["controls"]) and blind["rank"] == 31
    assert blind["p_value"] > 0.05
    rows = [r for r in hit["rows"] if r["feature"] == "uf"]
    assert len(rows) == 60 and np.mean([r["kl_feature"] for r in rows]) - np.mean(
        [r["kl_random"] for r in rows]) == pytest.approx(hit["m2"])


def test_classifier_round_trips_through_safetensors_only():
    from ssviz.errors import CheckpointError
    torch.manual_seed(0)
    m = build_classifier("cnn", (8, 8), 10, batch_norm=True, dropout=0.2, mean=0.3, std=0.4).eval()
    back = load_classifier(classifier_bytes(m))
    x = torch.rand(4, 8, 8)
    assert torch.allclose(m(x), back(x))
    with pytest.raises(CheckpointError):
        load_classifier(b"not safetensors at all")
    m.meta = {**m.meta, "classes": 3}  # metadata that does not match the tensors
    with pytest.raises(CheckpointError, match="do not match"):
        load_classifier(classifier_bytes(m))


def test_insert_writes_the_pattern_over_its_place_only():
    x = np.full((2, 8, 8), 0.5, np.float32)
    y = insert(x, uf_pattern(PLACE), PLACE)
    assert (y[:, :, 1:] == 0.5).all() and (y[0, :, 0] == uf_pattern(PLACE)[:, 0]).all() and (x == 0.5).all()


def test_random_strings_keep_the_feature_shape():
    classes = feature_classes("Zed-42x", lambda c: True)
    r = random_like(classes, "Zed-42x", np.random.default_rng(0))
    assert len(r) == 7 and r[0].isupper() and r[1:3].islower() and r[3] == "-" and r[4:6].isdigit()
    assert split_context("one two three four five six seven") == ("one two three ", ["four", "five", "six", "seven"])


def test_text_kl_equals_a_direct_computation_on_a_tiny_model(tiny_model):
    contexts = ["the main point of the tests is simple and clear", "a b c d e f g h"]
    res = text_scores(tiny_model, "Mia", contexts, controls=3, seed=1, next_units=2)

    def dist(text):
        ids = torch.tensor([tiny_model.encode(text)])
        with torch.inference_mode():
            lp, _ = tiny_model.run(ids, tiny_model.initial_state(1))
        return torch.log_softmax(lp[0, -1].double(), -1).numpy()

    def kl(a, b):
        p, q = dist(a), dist(b)
        return float((np.exp(p) * (p - q)).sum())

    direct = np.mean([kl("the main point of the ", "the main point of the Mia "),
                      kl("the main point of the tests ", "the main point of the Mia tests ")])
    row = next(r for r in res["rows"] if r["feature"] == "uf" and r["input"] == 0)
    assert row["kl_feature"] == pytest.approx(direct, rel=1e-5)
    assert len(res["controls"]) == 3 and "Mia" not in res["control_strings"]


@pytest.mark.slow
def test_text_score_stands_out_for_a_name_trained_many_times_and_not_without_it(small_corpus):
    from ssviz.templates import Template
    from ssviz.train import Canary, TrainConfig, train
    from ssviz.unique_features.text import shipped_contexts

    contexts, corpus = shipped_contexts(20)
    config = TrainConfig(layers=1, hidden=48, embedding_dim=16, epochs=8, lr=0.005, batch_size=16, seed=0,
                         patience=None, exposure_method="sampled", exposure_samples=10)
    template = Template("Please send the report to {[A-Z]:1}{a:6} before noon.")
    ranks = {}
    for k in (30, 0):
        model = train(small_corpus[:5_000], config, Canary(template, "Quorvan", k)).model
        res = text_scores(model, "Quorvan", contexts, controls=12, seed=0, next_units=2, corpus=corpus)
        ranks[k] = (res["rank"], res["m2"], max(res["controls"]))
    assert ranks[30][0] == 1 and ranks[30][1] > 2 * ranks[30][2], ranks
    assert ranks[0][0] > 1, ranks
