import math

import numpy as np
import pytest
from scipy import stats

from ssviz import exposure
from ssviz.errors import SpaceTooLargeError, SsvizError
from ssviz.scoring import score_texts
from ssviz.templates import Template


def test_interpolation_matches_hand_ranks_in_input_order():
    refs = [5.0, 1.0, 3.0, 3.0, 9.0, 7.0, 2.0, 8.0]  # m = 8
    secrets = [3.0, 0.5, 10.0]
    # ranks: 1 + #refs <= s  -> 3.0: 1+4=5 ; 0.5: 1 ; 10.0: 9
    expected = [3 - math.log2(5), 3 - 0.0, 3 - math.log2(9)]
    assert exposure.interpolation(secrets, refs) == pytest.approx(expected)


@pytest.mark.parametrize("bad", [[1.0, float("nan")], [float("inf")]])
def test_non_finite_inputs_are_refused(bad):
    with pytest.raises(SsvizError, match="NaN or infinite"):
        exposure.interpolation(bad, [1.0, 2.0])
    with pytest.raises(SsvizError, match="NaN or infinite"):
        exposure.extrapolation([1.0], np.r_[np.arange(20.0), bad])


def test_extrapolation_recovers_known_skewnormal_quantiles():
    a, loc, scale = 4.0, 50.0, 8.0
    refs = stats.skewnorm.rvs(a, loc, scale, size=20_000, random_state=np.random.default_rng(0))
    qs = [0.5, 0.1, 1e-3]
    secrets = stats.skewnorm.ppf(qs, a, loc, scale)
    got = exposure.extrapolation(secrets, refs)
    assert got == pytest.approx(-np.log2(qs), abs=0.35)
    fit = exposure.fit_skewnorm(refs)
    assert fit.ks_pvalue > 0.01


def test_extrapolation_is_finite_and_monotone_far_in_the_tail():
    refs = stats.skewnorm.rvs(3.0, 60, 6, size=5000, random_state=np.random.default_rng(1))
    secrets = np.array([40.0, 20.0, 5.0, -50.0, -500.0])
    got = exposure.extrapolation(secrets, refs)
    assert np.all(np.isfinite(got))
    assert np.all(np.diff(got) > 0)
    assert got[-1] > 1000  # far beyond log2|R|: the paper notes estimated exposure is unbounded


def test_tail_logcdf_agrees_with_scipy_where_both_are_accurate():
    for a in (-2.0, 0.0, 1.5):
        for z in (-8.0, -15.0, -25.0):
            ref = float(stats.skewnorm.logcdf(z, a))
            if np.isfinite(ref) and ref > -600:
                assert exposure.tail_logcdf(z, a) == pytest.approx(ref, rel=1e-6)
    # where scipy underflows, the tail follows the asymptote log F ~ -(1 + a^2) z^2 / 2 - 2 log|z| + c
    d1 = exposure.tail_logcdf(-200.0, 1.5) - exposure.tail_logcdf(-100.0, 1.5)
    assert d1 == pytest.approx(-(1 + 1.5 ** 2) * (200 ** 2 - 100 ** 2) / 2 - 2 * np.log(2), abs=0.01)


def test_exact_exposure_equals_hand_computed_rank(tiny_model):
    t = Template("My PIN is {d:3}")
    lps = score_texts(tiny_model, [t.format(t.filler_at(i)) for i in range(t.space_size)])
    secret = "417"
    rank = int(np.sum(lps <= lps[417] + 1e-9))
    res = exposure.measure(tiny_model, t, secret, "exact")
    assert res.rank == rank
    assert res.exposure == pytest.approx(math.log2(1000) - math.log2(rank))
    assert res.log_perplexity == pytest.approx(lps[417], abs=1e-4)
    best = t.filler_at(int(np.argmin(lps)))
    top = exposure.measure(tiny_model, t, best, "exact")
    assert top.rank == 1 and top.exposure == pytest.approx(math.log2(1000))


@pytest.mark.slow
def test_auto_picks_exact_then_skewnorm(tiny_model):
    assert exposure.measure(tiny_model, Template("My PIN is {d:2}"), "12", "auto").method == "exact"
    res = exposure.measure(tiny_model, Template("My PIN is {d:9}"), "123456789", "auto", samples=500, limit=10 ** 4)
    assert res.method == "skewnorm" and res.rank is None
    assert res.ci[0] <= res.exposure <= res.ci[1] or abs(res.ci[0] - res.ci[1]) < 1.0
    assert 0 <= res.ks_pvalue <= 1 and set(res.skewnorm) == {"a", "loc", "scale"}
    with pytest.raises(SpaceTooLargeError):
        exposure.measure(tiny_model, Template("My PIN is {d:9}"), "123456789", "exact")


def test_sampled_is_reproducible_and_capped(tiny_model):
    t = Template("My PIN is {d:6}")
    a = exposure.sampled(tiny_model, t, "000123", samples=300, seed=4)
    b = exposure.sampled(tiny_model, t, "000123", samples=300, seed=4)
    assert a.exposure == b.exposure and a.ci == b.ci
    assert a.exposure <= math.log2(300)


def test_exact_and_sampled_report_the_fit(tiny_model):
    res = exposure.measure(tiny_model, Template("My PIN is {d:3}"), "123", "exact")
    assert 0 <= res.ks_pvalue <= 1 and set(res.skewnorm) == {"a", "loc", "scale"}
    tiny = exposure.measure(tiny_model, Template("My PIN is {[01]:2}"), "01", "exact")
    assert tiny.skewnorm is None and tiny.rank >= 1  # 4 fillers: nothing to fit, exact rank stands


def test_rank_and_exposure_arithmetic():
    lps = np.array([3.0, 1.0, 2.0, 2.0, 5.0])
    assert exposure.rank_among(lps, 2.0) == 3  # ties count against the secret, itself included
    assert exposure.rank_among(lps, 0.5) == 0
    assert exposure.exposure_at_rank(8, 1) == 3.0 and exposure.exposure_at_rank(8, 8) == 0.0
    assert exposure.exposure_at_rank(1024, 2.5) == pytest.approx(10 - math.log2(2.5))


def test_fit_subsample_is_none_for_tiny_spaces_and_seeded_otherwise():
    assert exposure.fit_subsample(np.arange(4.0)).params() is None
    refs = stats.skewnorm.rvs(2.0, 40, 5, size=30_000, random_state=np.random.default_rng(3))
    a, b = exposure.fit_subsample(refs), exposure.fit_subsample(refs)
    assert a == b and a.params() == exposure.fit_skewnorm(refs[exposure.fit_indices(len(refs))]).params()


def test_bootstrap_ci_brackets_the_estimate_and_is_seeded():
    refs = np.random.default_rng(0).normal(40.0, 4.0, 500)
    ci = exposure.bootstrap_ci(lambda s, r: exposure.interpolation([s], r)[0], 35.0, refs, 100, seed=1)
    assert ci == exposure.bootstrap_ci(lambda s, r: exposure.interpolation([s], r)[0], 35.0, refs, 100, seed=1)
    assert ci[0] <= exposure.interpolation([35.0], refs)[0] <= ci[1]


def test_every_method_is_reached_by_name_through_measure(tiny_model):
    from ssviz.extraction import search_exposure
    t = Template("My PIN is {d:2}")
    assert set(exposure.METHODS) == {"exact", "sampled", "skewnorm", "search"}
    exact = exposure.measure(tiny_model, t, "42", "exact", max_nodes=10)  # another method's option is left out
    found = exposure.measure(tiny_model, t, "42", "search", samples=20, max_nodes=5_000)
    assert found.method == "search" and found.rank == exact.rank
    assert found.to_json() == search_exposure(tiny_model, t, "42", max_nodes=5_000).to_json()
    assert exposure.measure(tiny_model, t, "42", "sampled", samples=50).samples == 50
    with pytest.raises(SsvizError, match="search, auto"):
        exposure.measure(tiny_model, t, "42", "brute")
    with pytest.raises(TypeError, match="sample_count"):
        exposure.measure(tiny_model, t, "42", "exact", sample_count=5)
