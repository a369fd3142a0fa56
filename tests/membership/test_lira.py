"""Online LiRA from a counterfactual pool written here: Gaussians per text, the likelihood ratio, texts
outside the pool left empty."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from ssviz.errors import SsvizError
from ssviz.membership.lira import lira_scores, read_pool
from ssviz.membership.run import mean_ll, run_mia
from ssviz.scoring import read_texts

MEMBERS = ["my pin is 4821", "Send 12 apples", "the code 999-111", "Ian met Nina"]
NONMEMBERS = ["no one knows", "Yes said Paul", "zz top plays", "the end is near"]


def write_pool(folder, texts, rng, models: int = 6):
    """A pool in the counterfactual study's format: each model includes a random half of the examples."""
    folder.mkdir()
    inc, met = [], []
    for m in range(models):
        for e, _ in enumerate(texts):
            included = bool((m + e) % 2)
            inc.append({"model": m, "example": e, "included": included})
            met.append({"model": m, "example": e, "split": "train", "accuracy": 0.5,
                        "log_likelihood": float(rng.normal(-1.0 if included else -2.0, 0.2 + 0.05 * e))})
    met.append({"model": 0, "example": 99, "split": "validation", "accuracy": 0.1, "log_likelihood": -9.0})
    pd.DataFrame(inc).to_parquet(folder / "inclusion.parquet")
    pd.DataFrame(met).to_parquet(folder / "metrics.parquet")
    pd.DataFrame({"example": range(len(texts)), "text": texts, "memorization": 0.0}).to_csv(
        folder / "memorization.csv", index=False)
    return pd.DataFrame(inc).merge(pd.DataFrame(met), on=["model", "example"])


@pytest.mark.slow
def test_lira_is_the_gaussian_likelihood_ratio_over_the_pool(tiny_model, tmp_path):
    pooled = [MEMBERS[0], MEMBERS[1], NONMEMBERS[0], NONMEMBERS[2], "a text nobody asks about"]
    table = write_pool(tmp_path / "pool", pooled, np.random.default_rng(0))
    res = run_mia(tiny_model, MEMBERS, NONMEMBERS, attacks="loss,lira", pool=tmp_path / "pool")
    lls = [mean_ll(r) for r in read_texts(tiny_model, res.texts)]
    for j, text in enumerate(res.texts):
        if text not in pooled:
            assert np.isnan(res.scores["lira"][j])
            continue
        rows = table[table.example == pooled.index(text)]
        a, b = rows[rows.included].log_likelihood, rows[~rows.included].log_likelihood
        want = norm.logpdf(lls[j], a.mean(), a.std(ddof=1)) - norm.logpdf(lls[j], b.mean(), b.std(ddof=1))
        assert res.scores["lira"][j] == pytest.approx(want, rel=1e-9)
    assert res.attacks["lira"]["scored"] == 4 and res.attacks["loss"]["scored"] == 8
    assert read_pool(tmp_path / "pool").models == 6


def test_a_text_seen_only_once_in_a_side_takes_the_pooled_spread(tmp_path):
    write_pool(tmp_path / "pool", ["x y", "z w"], np.random.default_rng(1), models=2)
    pool = read_pool(tmp_path / "pool")
    got = lira_scores(pool, ["x y", "nope"], [-1.5, -1.5])
    assert np.isfinite(got[0]) and np.isnan(got[1])


def test_a_pool_missing_a_file_or_column_is_one_clear_error(tmp_path):
    write_pool(tmp_path / "pool", ["x y"], np.random.default_rng(2))
    (tmp_path / "pool" / "memorization.csv").write_text("example,words\n0,x y\n")
    with pytest.raises(SsvizError, match="lacks the column"):
        read_pool(tmp_path / "pool")
    (tmp_path / "pool" / "inclusion.parquet").unlink()
    with pytest.raises(SsvizError, match="no inclusion.parquet"):
        read_pool(tmp_path / "pool")
