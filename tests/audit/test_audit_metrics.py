"""Membership metrics (ROC, AUC, TPR at low FPR) against brute force, ties included, and the audit figures."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssviz.audit import (AuditError, auc, from_groups, membership_arrays, membership_scores, roc_curve, summarize,
                         tpr_at_fpr)
from ssviz.errors import SsvizError
from ssviz.plots.audit import epsilon_bars, plain_reading, roc_figure, score_histograms


def brute_auc(scores, included):
    """Mann-Whitney: every (member, non-member) pair, a tie counting one half."""
    s, inc = np.asarray(scores, float), np.asarray(included, bool)
    diff = s[inc][:, None] - s[~inc][None, :]
    return float(np.mean((diff > 0) + 0.5 * (diff == 0)))


def brute_rates(scores, included, threshold):
    s, inc = np.asarray(scores, float), np.asarray(included, bool)
    guess = s >= threshold
    return np.mean(guess[~inc]), np.mean(guess[inc])


labelled = st.integers(2, 60).flatmap(lambda n: st.tuples(
    st.lists(st.integers(-4, 4), min_size=n, max_size=n),  # few values: ties everywhere
    st.lists(st.booleans(), min_size=n, max_size=n)).filter(lambda t: 0 < sum(t[1]) < n))


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(labelled)
def test_roc_points_are_the_thresholds_rates_and_auc_is_mann_whitney(data):
    scores, included = data
    fpr, tpr, thr = roc_curve(scores, included)
    assert (fpr[0], tpr[0], thr[0]) == (0.0, 0.0, np.inf) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0) and np.all(np.diff(thr) < 0)
    assert len(thr) == len(set(scores)) + 1  # one point per distinct score
    for f, t, th in zip(fpr[1:], tpr[1:], thr[1:]):
        assert (f, t) == pytest.approx(brute_rates(scores, included, th))
    assert auc(scores, included) == pytest.approx(brute_auc(scores, included))


@settings(max_examples=100, deadline=None)
@given(labelled, st.sampled_from([0.0, 0.001, 0.01, 0.1, 0.25, 0.5, 1.0]))
def test_tpr_at_fpr_is_the_best_threshold_within_the_budget(data, budget):
    scores, included = data
    candidates = [brute_rates(scores, included, th) for th in [np.inf, *set(scores)]]
    best = max(t for f, t in candidates if f <= budget + 1e-12)
    assert tpr_at_fpr(scores, included, (budget,))[budget] == pytest.approx(best)


@settings(max_examples=60, deadline=None)
@given(labelled, st.randoms(use_true_random=False))
def test_metrics_ignore_row_order_and_monotone_rescaling(data, rnd):
    scores, included = np.asarray(data[0], float), np.asarray(data[1], bool)
    perm = np.array(rnd.sample(range(len(scores)), len(scores)))
    rescaled = np.exp(scores[perm] / 3) * 7 - 2
    assert auc(rescaled, included[perm]) == pytest.approx(auc(scores, included))
    assert tpr_at_fpr(rescaled, included[perm]) == pytest.approx(tpr_at_fpr(scores, included))


def test_separation_extremes_and_ties():
    inc = np.array([1, 1, 1, 0, 0, 0], bool)
    assert auc([6, 5, 4, 3, 2, 1], inc) == 1.0
    assert auc([1, 2, 3, 4, 5, 6], inc) == 0.0
    assert auc(np.zeros(6), inc) == 0.5  # all tied: a coin, not a perfect attack
    assert tpr_at_fpr(np.zeros(6), inc, (0.0, 0.5, 1.0)) == {0.0: 0.0, 0.5: 0.0, 1.0: 1.0}
    # a member tied with a non-member at the top cannot be claimed at zero false positives
    scores, inc = [9, 9, 5, 1], np.array([1, 0, 1, 0], bool)
    assert tpr_at_fpr(scores, inc, (0.0, 0.5)) == {0.0: 0.0, 0.5: 1.0}
    fpr, tpr, _ = roc_curve(scores, inc)
    assert fpr.tolist() == [0.0, 0.5, 0.5, 1.0] and tpr.tolist() == [0.0, 0.5, 1.0, 1.0]


def test_low_fpr_with_few_non_members_means_zero_false_positives():
    """250 non-members: FPR 0.1% is below one false positive, so it is the TPR at none (no interpolation)."""
    rng = np.random.default_rng(0)
    included = np.r_[np.ones(250, bool), np.zeros(250, bool)]
    scores = np.r_[rng.normal(1.5, 1, 250), rng.normal(0, 1, 250)]
    top_out = scores[~included].max()
    at = tpr_at_fpr(scores, included)
    assert at[0.001] == pytest.approx(np.mean(scores[included] > top_out))
    assert at[0.01] == pytest.approx(np.mean(scores[included] > np.sort(scores[~included])[-3]))  # 2 FP of 250
    assert at[0.001] <= at[0.01] <= at[0.1]
    fpr, tpr, _ = roc_curve(scores, included)
    assert at[0.1] <= np.interp(0.1, fpr, tpr) + 1e-12  # never above the interpolated curve


def test_membership_scores_are_bits_above_chance():
    lps = np.array([10.0, 19.93, 30.0])
    assert membership_scores(lps, 10 ** 6) == pytest.approx(math.log2(10 ** 6) - lps)
    assert membership_scores(lps).tolist() == [-10.0, -19.93, -30.0]
    with pytest.raises(AuditError, match="NaN or infinite"):
        membership_scores([1.0, float("nan")], 100)


def test_from_groups_pools_the_loss_attacks_two_sets():
    scores, included = from_groups([-1.0, -1.2], [-2.0, -2.5, -0.5])
    assert scores.tolist() == [-1.0, -1.2, -2.0, -2.5, -0.5] and included.tolist() == [1, 1, 0, 0, 0]
    assert auc(scores, included) == pytest.approx(4 / 6)


@pytest.mark.parametrize("scores,included,match", [
    ([1.0, 2.0, 3.0], [True, True, True], "all 3 canaries are included"),
    ([1.0, 2.0, 3.0], [0, 0, 0], "all 3 canaries are excluded"),
    ([1.0, float("nan")], [1, 0], "NaN or infinite"),
    ([1.0, -float("inf")], [1, 0], "first at index 1"),
    ([1.0, 2.0], [1, 0, 1], "one entry per score"),
    ([1.0, 2.0], ["yes", "no"], "true/false"),
    ([1.0, 2.0], [1, 2], "true/false"),
    ([], [], "no canaries"),
    (["x", "y"], [1, 0], "must be numbers"),
])
def test_bad_inputs_give_one_clear_line(scores, included, match):
    for fn in (roc_curve, auc, tpr_at_fpr):
        with pytest.raises(AuditError, match=match) as err:
            fn(scores, included)
        assert isinstance(err.value, SsvizError) and isinstance(err.value, ValueError)
        assert "\n" not in str(err.value)


def test_fpr_budget_outside_zero_one_is_refused():
    with pytest.raises(AuditError, match="between 0 and 1"):
        tpr_at_fpr([1.0, 2.0], [1, 0], (1.5,))


def test_summarize_has_the_cli_keys_and_json_types():
    rng = np.random.default_rng(1)
    included = rng.random(200) < 0.5
    out = summarize(rng.normal(size=200) + 2 * included, included, delta=1e-5)
    assert list(out) == ["canaries", "included", "auc", "tpr_at_fpr", "epsilon_lower", "confidence", "delta",
                         "epsilon_lower_fdp", "auc_ci", "tpr_ci", "auc_hull", "bounds"]
    assert list(out["tpr_at_fpr"]) == ["0.001", "0.01", "0.1"] == list(out["tpr_ci"])
    assert out["canaries"] == 200 and out["included"] == int(included.sum())
    assert all(type(v) in (int, float) for k, v in out.items() if k not in ("tpr_at_fpr", "auc_ci", "tpr_ci", "bounds"))
    assert all(type(v) is float for v in out["tpr_at_fpr"].values())
    assert 0 < out["epsilon_lower"] < 5 and out["confidence"] == 0.95 and out["delta"] == 1e-5


def test_membership_arrays_accepts_bools_and_zero_one():
    s, inc = membership_arrays([3, 1], np.array([1.0, 0.0]))
    assert s.dtype == np.float64 and inc.tolist() == [True, False]


# --- figures ----------------------------------------------------------------------------------
def test_score_histograms_share_bins_and_count_every_canary():
    rng = np.random.default_rng(0)
    included = rng.random(500) < 0.5
    scores = rng.normal(size=500) + included
    fig = score_histograms(scores, included, bins=30)
    out, inn = fig.data
    assert len(out.x) == len(inn.x) == 30 and np.allclose(out.x, inn.x)
    assert int(sum(inn.y)) == included.sum() and int(sum(out.y)) == (~included).sum()
    assert fig.layout.barmode == "overlay"


def test_roc_figure_is_log_log_with_chance_line_and_zeros_at_the_floor():
    scores, included = [5.0, 4.0, 3.0, 2.0, 1.0, 0.0], np.array([1, 1, 0, 1, 0, 0], bool)
    fpr, tpr, _ = roc_curve(scores, included)
    fig = roc_figure({"canaries": (fpr, tpr)})
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    chance, curve, *budgets = fig.data
    assert chance.name == "chance" and list(chance.x) == list(chance.y)
    assert [b.name for b in budgets] == ["FPR 0.001", "FPR 0.01", "FPR 0.1"]
    assert [list(b.x) for b in budgets] == [[0.001] * 2, [0.01] * 2, [0.1] * 2]  # data values, as traces use
    floor = chance.x[0]
    assert floor < min(1 / 3, 0.001) and 0 not in curve.x and 0 not in curve.y
    assert np.allclose(curve.x, np.maximum(fpr, floor)) and np.allclose(curve.y, np.maximum(tpr, floor))
    assert fig.layout.xaxis.range[0] == pytest.approx(math.log10(floor))
    assert not fig.layout.shapes and not fig.layout.annotations


def test_epsilon_bars_pair_the_audit_with_the_claim():
    fig = epsilon_bars([{"label": "plain", "epsilon_lower": 2.1, "epsilon_claimed": None},
                        {"label": "DP eps 8", "epsilon_lower": 0.4, "epsilon_claimed": 8.0}])
    lower, claimed = fig.data
    assert list(lower.y) == [2.1, 0.4] and list(claimed.y) == [0, 8.0]
    assert claimed.text[0] == "no DP guarantee" and lower.text[1] == "≥ 0.40"
    assert fig.layout.barmode == "group" and fig.layout.yaxis.range[1] >= 8.0


def test_plain_reading():
    assert "at least as much as an epsilon-2 mechanism; its DP guarantee says at most 8" in plain_reading(2.0, 8.0)
    assert "without a DP guarantee" in plain_reading(2.3, None)
    assert "no leak it can prove" in plain_reading(0.0, 4.0)
    assert "does not hold" in plain_reading(3.0, 1.0)


def test_summary_intervals_contain_the_estimates_and_match_direct_computations():
    from scipy.stats import binomtest
    from ssviz.audit.metrics import clopper_pearson, from_groups, summary
    rng = np.random.default_rng(0)
    s, inc = from_groups(rng.normal(1, 1, 200), rng.normal(0, 1, 300))
    out = summary(s, inc, boots=300, seed=1)
    assert out["auc_ci"][0] < out["auc"] < out["auc_ci"][1]
    assert out["auc"] == pytest.approx(float(np.mean(s[inc][:, None] > s[~inc][None, :])), abs=1e-9)
    assert set(out["tpr_at_fpr"]) == {"0.001", "0.01", "0.1"}
    k = round(out["tpr_at_fpr"]["0.1"] * 200)
    ci = binomtest(k, 200).proportion_ci(0.95, method="exact")
    assert out["tpr_ci"]["0.1"] == pytest.approx([ci.low, ci.high], abs=1e-9)
    assert clopper_pearson(0, 10) == (0.0, pytest.approx(0.3084971, abs=1e-6))
    assert summary(s, inc, boots=300, seed=1) == out  # seeded
