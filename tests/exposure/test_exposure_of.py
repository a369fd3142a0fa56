"""exposure_of: other fillers measured against an existing result's references, by its own estimator."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssviz import exposure
from ssviz.exposure import ExposureResult, exposure_of


def _refs(n=500, seed=0):
    return np.random.default_rng(seed).normal(40.0, 4.0, n)


def test_exact_ranks_among_every_enumerated_filler():
    refs = np.array([10.0, 20.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0])
    res = ExposureResult(3.0, "exact", 8, 10.0, rank=1, reference_lps=refs)
    rows = exposure_of(res, [20.0, 5.0, 70.0])
    assert [r["rank"] for r in rows] == [3, 1, 8]  # ties count against the filler; below all -> rank 1
    assert rows[0]["exposure"] == pytest.approx(3 - math.log2(3))
    assert rows[1]["exposure"] == pytest.approx(3.0)
    assert rows[2]["exposure"] == pytest.approx(0.0)


def test_sampled_interpolates_like_the_library_estimator():
    refs = _refs()
    res = ExposureResult(1.0, "sampled", 10 ** 6, 30.0, samples=len(refs), reference_lps=refs)
    lps = [30.0, 40.0, 55.0]
    assert [r["exposure"] for r in exposure_of(res, lps)] == pytest.approx(exposure.interpolation(lps, refs))
    assert all(r["rank"] is None for r in exposure_of(res, lps))


def test_skewnorm_extrapolates_with_the_results_fitted_parameters():
    refs = _refs()
    fit = exposure.fit_skewnorm(refs)
    res = ExposureResult(1.0, "skewnorm", 10 ** 9, 30.0, skewnorm=fit.params(), ks_pvalue=fit.ks_pvalue,
                         reference_lps=refs)
    lps = [10.0, 30.0]
    assert [r["exposure"] for r in exposure_of(res, lps)] == pytest.approx(exposure.extrapolation(lps, refs, fit))
    # the stored parameters are used, not a refit: different params give different numbers
    res.skewnorm = {**fit.params(), "loc": fit.loc + 5}
    assert exposure_of(res, [10.0])[0]["exposure"] != pytest.approx(exposure.extrapolation([10.0], refs, fit)[0])


def test_a_result_without_references_gives_nan():
    res = ExposureResult(5.0, "search", 10 ** 6, 30.0, rank=32)
    rows = exposure_of(res, [30.0, 31.0])
    assert len(rows) == 2 and all(math.isnan(r["exposure"]) and r["rank"] is None for r in rows)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0, 100), min_size=1, max_size=40), st.floats(0, 100))
def test_exact_exposure_matches_rank_definition_and_is_within_bounds(refs, lp):
    refs = np.array(refs)
    res = ExposureResult(0.0, "exact", len(refs), float(refs[0]), rank=1, reference_lps=refs)
    row = exposure_of(res, [lp])[0]
    assert row["rank"] == max(1, int(np.count_nonzero(refs <= lp)))
    assert 0.0 <= row["exposure"] <= math.log2(len(refs)) + 1e-12
