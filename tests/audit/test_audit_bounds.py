"""The one-run epsilon lower bound: the theorem's p-value, soundness (exact and by simulation) and power.

Soundness is checked against mechanisms whose epsilon is known: randomized response, where each
canary's "in"/"out" signal is right with probability e^eps / (1 + e^eps) - the mechanism for which
the theorem is tight - and variants that leak more through delta or through ties.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from scipy import special, stats

from ssviz.audit import (AuditError, correct_counts, default_guesses, epsilon_for_counts, epsilon_lower_bound,
                         group_privacy, p_value, summarize)
from ssviz.errors import SsvizError

ALPHA = 0.05


def randomized_response(m: int, eps: float, rng: np.random.Generator, *, tie_noise: bool = True):
    """(scores, included) from eps-DP randomized response: each canary's bit is its membership w.p. e^eps/(1+e^eps).

    ``tie_noise`` adds independent noise so scores are distinct (post-processing: still eps-DP).
    """
    included = rng.random(m) < 0.5
    bit = np.where(rng.random(m) < special.expit(eps), included, ~included)
    return (bit + 0.5 * rng.random(m) if tie_noise else bit.astype(float)), included


def reference_p_value(m, r, v, eps, delta):
    """The theorem written out term by term, loops and all (the paper's statement, not our vectorization)."""
    q = math.exp(eps) / (1 + math.exp(eps))
    beta = stats.binom.sf(v - 1, r, q)
    pmf = [stats.binom.pmf(j, r, q) for j in range(v)]
    worst = 0.0
    for i in range(1, v + 1):
        worst = max(worst, sum(pmf[v - i:v]) / i)
    return min(1.0, beta + 2 * m * delta * worst)


def failure_probability(r, eps_true, *, q_true, delta, alpha=ALPHA, reveal_all=0.0):
    """Exact P[bound for a fixed r-guess audit > eps_true] when each guess is right w.p. ``q_true``
    (and, with probability ``reveal_all``, every guess is right)."""
    eps_v = np.array([epsilon_for_counts(r, r, v, delta=delta, alpha=alpha) for v in range(r + 1)])
    wrong = eps_v > eps_true
    return reveal_all * wrong[-1] + (1 - reveal_all) * stats.binom.pmf(np.arange(r + 1), r, q_true)[wrong].sum()


# --- the theorem ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("m,r,v,delta", [(10, 10, 9, 0.0), (100, 40, 30, 1e-3), (1000, 200, 150, 1e-5),
                                         (50, 50, 25, 0.01), (30, 7, 7, 0.02), (5, 1, 1, 0.1)])
def test_p_value_is_the_theorem_term_by_term(m, r, v, delta):
    eps = np.array([0.0, 0.3, 1.0, 2.5, 6.0])
    ours = p_value(m, r, v, eps, delta)
    ref = [reference_p_value(m, r, v, e, delta) for e in eps]
    assert np.allclose(ours, ref, rtol=1e-9, atol=1e-15)


def test_p_value_edges():
    assert p_value(10, 5, 0, [0.0, 3.0], 0.0).tolist() == [1.0, 1.0]  # no right guess proves nothing
    assert p_value(10, 10, 10, 0.0, 0.0)[0] == pytest.approx(2.0 ** -10)  # all ten right by coin flips
    with pytest.raises(AuditError):
        p_value(10, 5, 6, 1.0, 0.0)  # more right than guessed


def test_bound_is_the_largest_eps_ruled_out():
    m = r = 200
    v = 150
    eps = epsilon_for_counts(m, r, v, delta=1e-4, alpha=ALPHA)
    assert p_value(m, r, v, eps, 1e-4)[0] < ALPHA  # the reported eps is itself ruled out ...
    above = np.linspace(eps + 1e-6, eps + 5, 2000)
    assert (p_value(m, r, v, above, 1e-4) >= ALPHA).all()  # ... and nothing larger is
    assert epsilon_for_counts(m, r, 100, delta=0.0, alpha=ALPHA) == 0.0  # coin-flip accuracy: 0
    assert epsilon_for_counts(m, r, 0, delta=0.0, alpha=ALPHA) == 0.0


def test_bound_moves_the_right_way_with_evidence_delta_and_confidence():
    m = r = 300
    by_v = [epsilon_for_counts(m, r, v, delta=1e-5, alpha=ALPHA) for v in range(150, 301, 10)]
    assert all(a <= b for a, b in zip(by_v, by_v[1:])) and by_v[-1] > by_v[0]
    by_delta = [epsilon_for_counts(m, r, 250, delta=d, alpha=ALPHA) for d in (0.0, 1e-6, 1e-4, 1e-3)]
    assert all(a >= b for a, b in zip(by_delta, by_delta[1:]))
    by_alpha = [epsilon_for_counts(m, r, 250, delta=1e-5, alpha=a) for a in (0.001, 0.01, 0.05, 0.2)]
    assert all(a <= b for a, b in zip(by_alpha, by_alpha[1:]))


# --- soundness, exactly: the probability a fixed audit overclaims -----------------------------------
@pytest.mark.parametrize("r,eps", [(50, 0.5), (200, 1.0), (200, 2.0), (120, 3.0)])
def test_fixed_audit_of_randomized_response_overclaims_at_most_alpha_and_is_not_slack(r, eps):
    fail = failure_probability(r, eps, q_true=special.expit(eps), delta=0.0)
    assert fail <= ALPHA
    assert fail >= ALPHA / 3  # randomized response is the theorem's worst case: the level is nearly used


def test_delta_term_keeps_a_mechanism_that_sometimes_reveals_everything_sound():
    """(eps, delta)-DP: randomized response, except that with probability delta every membership is revealed."""
    r, eps, delta = 200, 1.0, 0.03
    q = special.expit(eps)
    without_term = failure_probability(r, eps, q_true=q, delta=0.0, reveal_all=delta)
    with_term = failure_probability(r, eps, q_true=q, delta=delta, reveal_all=delta)
    assert without_term > ALPHA  # ignoring delta overclaims: the bug this term prevents
    assert with_term <= ALPHA


@pytest.mark.parametrize("eps,delta", [(1.0, 1e-3), (2.0, 1e-4)])
def test_per_canary_leak_with_probability_delta_stays_sound(eps, delta):
    """Each canary's membership is revealed outright with probability delta, else randomized response."""
    q = delta + (1 - delta) * special.expit(eps)
    assert failure_probability(150, eps, q_true=q, delta=delta) <= ALPHA


# --- soundness by simulation: the whole pipeline, scores to bound -----------------------------------
def test_randomized_response_bound_stays_below_true_eps_in_95_percent_of_trials():
    rng = np.random.default_rng(2023)
    for m, eps, trials in ((200, 1.0, 400), (100, 2.0, 300), (400, 0.3, 200), (1000, 2.0, 100)):
        bounds = np.array([epsilon_lower_bound(*randomized_response(m, eps, rng), delta=0.0).epsilon
                           for _ in range(trials)])
        assert np.mean(bounds > eps) <= ALPHA, (m, eps, np.mean(bounds > eps))
        assert bounds.max() < eps + 1.0  # the rare miss is a near miss


def test_choosing_the_best_guess_counts_without_correction_overclaims():
    """The attack on a naive audit: try every candidate at the full level and keep the best."""
    rng = np.random.default_rng(7)
    m, eps, trials = 200, 1.0, 300
    naive = sound = 0
    for _ in range(trials):
        scores, included = randomized_response(m, eps, rng)
        cands = default_guesses(m)
        right = correct_counts(scores, included, cands)
        best = max(epsilon_for_counts(m, kp + km, int(v), delta=0.0, alpha=ALPHA) for (kp, km), v in zip(cands, right))
        naive += best > eps
        sound += epsilon_lower_bound(scores, included, delta=0.0).epsilon > eps
    assert naive / trials > 2 * ALPHA  # about 18%: unsound
    assert sound / trials <= ALPHA


def test_union_bound_is_over_the_candidates_actually_tried():
    rng = np.random.default_rng(3)
    scores, included = randomized_response(500, 2.0, rng)
    one = epsilon_lower_bound(scores, included, delta=0.0, guesses=[(250, 250)])
    many = epsilon_lower_bound(scores, included, delta=0.0, guesses=[(250, 250)] + [(k, 0) for k in range(1, 40)])
    assert one.candidates == 1 and many.candidates == 40
    assert many.epsilon <= one.epsilon or (many.k_plus, many.k_minus) != (250, 250)
    same_guess = epsilon_for_counts(500, 500, one.correct, delta=0.0, alpha=ALPHA / 40)
    assert many.epsilon >= same_guess  # the (250, 250) guess is still there, at level alpha / 40


# --- ties: guesses never depend on the order canaries are listed in ---------------------------------
def test_tied_scores_with_labels_sorted_give_zero_not_the_labels():
    included = np.r_[np.ones(500, bool), np.zeros(500, bool)]  # a file sorted by membership
    for scores in (np.zeros(1000), np.full(1000, 3.25)):
        b = epsilon_lower_bound(scores, included, delta=0.0)
        assert b.epsilon == 0.0 and b.correct == 0


def test_binary_scores_from_randomized_response_stay_sound_whatever_the_row_order():
    rng = np.random.default_rng(11)
    m, eps, trials = 200, 1.0, 300
    misses = 0
    for _ in range(trials):
        scores, included = randomized_response(m, eps, rng, tie_noise=False)
        order = np.lexsort((~included, -scores))  # members listed first within each tie
        misses += epsilon_lower_bound(scores[order], included[order], delta=0.0).epsilon > eps
    assert misses / trials <= ALPHA


def test_ties_at_a_boundary_are_abstained_on():
    scores = np.array([9.0, 8.0, 8.0, 8.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    included = np.array([1, 1, 1, 0, 0, 0, 0, 0, 1, 0], bool)
    # k_plus=2: only the 9 is above the tie at 8 -> one right guess; k_plus=4 takes all three 8s
    # k_minus=4 stops inside the five tied 0s -> no "out" guess; 5 takes them all (4 right); 6 adds the 1
    assert correct_counts(scores, included, [(1, 0), (2, 0), (4, 0), (0, 4), (0, 5), (0, 6)]).tolist() == \
        [1, 1, 3, 0, 4, 5]
    shuffled = np.random.default_rng(0).permutation(10)
    assert correct_counts(scores[shuffled], included[shuffled], [(2, 0), (4, 0), (0, 6)]).tolist() == [1, 3, 5]


# --- power: how close the bound gets to the truth ------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("m,within", [(1000, 0.35), (10_000, 0.12)])
def test_bound_approaches_true_eps_as_canaries_grow(m, within):
    """eps = 2 randomized response: median bound 1.75 at m = 1,000 and 1.92 at m = 10,000 (docs/audit.md)."""
    rng = np.random.default_rng(5)
    bounds = [epsilon_lower_bound(*randomized_response(m, 2.0, rng), delta=1e-5).epsilon for _ in range(5)]
    assert 2.0 - within <= np.median(bounds) <= 2.0


@pytest.mark.slow
def test_soundness_and_power_at_scale():
    rng = np.random.default_rng(99)
    for m, eps, trials, delta in ((1000, 1.0, 400, 0.0), (1000, 4.0, 300, 0.0), (50, 2.0, 1000, 0.0),
                                  (300, 1.0, 150, 1e-6)):
        bounds = np.array([epsilon_lower_bound(*randomized_response(m, eps, rng), delta=delta).epsilon
                           for _ in range(trials)])
        assert np.mean(bounds > eps) <= ALPHA, (m, eps)
    bounds = [epsilon_lower_bound(*randomized_response(100_000, 2.0, rng), delta=0.0).epsilon for _ in range(3)]
    assert 1.95 <= np.median(bounds) <= 2.0


def test_thousand_canaries_twenty_candidates_well_under_a_second():
    rng = np.random.default_rng(0)
    scores, included = randomized_response(1000, 1.0, rng)
    guesses = default_guesses(1000) + [(150, 150), (250, 0), (400, 100)]
    assert len(guesses) == 20
    start = time.perf_counter()
    epsilon_lower_bound(scores, included, delta=1e-5, guesses=guesses)
    assert time.perf_counter() - start < 0.5


# --- the issue's calibration, from synthetic scores only -----------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("target_auc,low,high", [(0.85, 1.5, 2.3), (0.75, 0.8, 1.5)])
def test_gaussian_scores_at_the_issues_aucs(target_auc, low, high):
    """Members' scores shifted by d = sqrt(2) Phi^-1(AUC), 500 canaries: the issue measured an uncorrected
    2.3 (AUC 0.85) and 1.2 (AUC 0.75) on real models; the sound bound lands at or below."""
    rng = np.random.default_rng(12)
    shift = math.sqrt(2) * stats.norm.ppf(target_auc)
    results = []
    for _ in range(20):
        included = rng.random(500) < 0.5
        results.append(summarize(rng.normal(size=500) + shift * included, included, delta=1e-5))
    assert abs(np.mean([r["auc"] for r in results]) - target_auc) < 0.02
    assert low <= np.median([r["epsilon_lower"] for r in results]) <= high


# --- degenerate inputs: a clear refusal or 0, never a wrong number ----------------------------------
@pytest.mark.parametrize("scores,included,match", [
    (np.arange(100.0), np.ones(100, bool), "all 100 canaries are included"),
    (np.arange(100.0), np.zeros(100, bool), "all 100 canaries are excluded"),
    (np.arange(9.0), np.arange(9) % 2 == 0, "at least 10 canaries"),
    (np.r_[np.nan, np.arange(99.0)], np.arange(100) % 2 == 0, "NaN or infinite"),
    (np.r_[np.arange(99.0), np.inf], np.arange(100) % 2 == 0, "first at index 99"),
    (np.arange(100.0), np.arange(99) % 2 == 0, "one entry per score"),
    (np.arange(100.0), np.arange(100) % 3, "true/false"),
    (np.arange(1000.0), np.arange(1000) < 300, "implausible for independent fair coins"),
    (np.ones((10, 10)), np.ones(100, bool), "flat list"),
    (["a"] * 20, np.arange(20) % 2 == 0, "must be numbers"),
])
def test_degenerate_inputs_are_refused_with_one_clear_line(scores, included, match):
    with pytest.raises(AuditError, match=match) as err:
        epsilon_lower_bound(scores, included, delta=1e-5)
    assert isinstance(err.value, SsvizError) and isinstance(err.value, ValueError)
    assert "\n" not in str(err.value) and len(str(err.value)) < 200


@pytest.mark.parametrize("kwargs,match", [
    (dict(delta=-1e-5), "delta"), (dict(delta=float("nan")), "delta"), (dict(delta=1.0), "delta"),
    (dict(delta="1e-5"), "delta"), (dict(delta=0.0, confidence=1.0), "confidence"),
    (dict(delta=0.0, confidence=0.0), "confidence"), (dict(delta=0.0, confidence=True), "confidence"),
    (dict(delta=0.0, guesses=[]), "no guess counts"), (dict(delta=0.0, guesses=[(60, 60)]), "at most 100"),
    (dict(delta=0.0, guesses=[(-1, 3)]), "non-negative"), (dict(delta=0.0, guesses=[(2.5, 1)]), "whole numbers"),
    (dict(delta=0.0, guesses=[3, 4]), "pairs"),
])
def test_bad_settings_are_refused(kwargs, match):
    rng = np.random.default_rng(0)
    scores, included = randomized_response(100, 1.0, rng)
    with pytest.raises(AuditError, match=match):
        epsilon_lower_bound(scores, included, **kwargs)


def test_no_signal_gives_zero_and_few_canaries_give_little():
    rng = np.random.default_rng(4)
    zeros = [epsilon_lower_bound(rng.normal(size=300), rng.random(300) < 0.5, delta=0.0).epsilon
             for _ in range(40)]
    assert np.mean(np.array(zeros) == 0.0) >= 0.9
    # ten canaries, perfectly separated: ten right guesses cannot prove much at 95%
    scores, included = np.arange(10.0), np.arange(10) >= 5
    assert epsilon_lower_bound(scores, included, delta=0.0).epsilon < 1.5


def test_default_guesses_depend_on_the_count_only_and_fit():
    for m in (10, 11, 57, 500, 1000, 10_000):
        g = default_guesses(m)
        assert g == default_guesses(m) and len(g) == len(set(g)) and 10 <= len(g) <= 20
        assert all(kp >= 1 and km >= 0 and kp + km <= m for kp, km in g)


def test_group_privacy_of_a_canary_inserted_k_times():
    assert group_privacy(2.0, 1e-5, 1) == (2.0, 1e-5)
    eps, delta = group_privacy(1.0, 1e-6, 4)
    assert eps == 4.0 and delta == pytest.approx(4 * math.exp(3) * 1e-6)
    assert group_privacy(8.0, 1e-5, 8)[1] == 1.0  # a vacuous guarantee stays a probability
    with pytest.raises(AuditError):
        group_privacy(1.0, 1e-5, 0)
