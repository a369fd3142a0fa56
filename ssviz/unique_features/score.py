"""The unique-feature scores, pure: output distributions in, numbers out (no model, no torch).

Hartley and Tsaftaris measure whether a model memorized a *unique feature* (UF), a
pattern that occurred in one training example, from the model's outputs alone:

* **M2** (arXiv 2202.08099, Sec. 3; 2205.10079, Sec. 3.2): over N out-of-distribution
  inputs x_i, ``mean_i KL(p(x_i) || p(x_i + UF)) - mean_i KL(p(x_i) || p(x_i + r_i))``
  with r_i a fresh random feature of the UF's shape and place. Positive: the model reacts
  more to the UF than to random features of its shape.
* **The class-probability score** (Scientific Reports 13:21366, 2023): for the UF's class
  k, ``M_k = mean_i [p_k(x_i + UF) - p_k(x_i)]`` with a one-sided paired t-test
  (memorized when p < 0.05); without k, the largest over classes.

Every function takes log-probabilities (natural logs, last axis = outcomes), so the same
code scores an image classifier's classes and a language model's next units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ssviz.errors import InvalidValueError

ALPHA = 0.05  # the papers' significance level


def kl_rows(logp: np.ndarray, logq: np.ndarray) -> np.ndarray:
    """``KL(p || q)`` in nats per row of log-distributions (last axis); 0 * log 0 counts as 0.

    Rows are renormalized first (a float32 softmax sums to 1 only up to rounding), so a
    distribution against itself is exactly 0."""
    logp = np.asarray(logp, dtype=np.float64)
    logq = np.asarray(logq, dtype=np.float64)
    if logp.shape != logq.shape:
        raise InvalidValueError(f"KL needs distributions of one shape, got {logp.shape} and {logq.shape}")
    logp = logp - _logsumexp(logp)
    logq = logq - _logsumexp(logq)
    p = np.exp(logp)
    with np.errstate(invalid="ignore"):
        terms = np.where(p > 0, p * (logp - logq), 0.0)
    return np.maximum(terms.sum(-1), 0.0)


def _logsumexp(x: np.ndarray) -> np.ndarray:
    m = np.max(x, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return m + np.log(np.exp(x - m).sum(-1, keepdims=True))


def m2(kl_feature, kl_random) -> float:
    """M2 of one feature: mean KL with the feature minus mean KL with the random features."""
    return float(np.mean(kl_feature) - np.mean(kl_random))


def bootstrap_m2(kl_feature, kl_random, *, resamples: int = 2_000, level: float = 0.95, seed: int = 0
                 ) -> tuple[float, float]:
    """Percentile bootstrap interval of M2 over the OOD inputs (inputs resampled in pairs, as M2 pairs them)."""
    a, b = np.asarray(kl_feature, np.float64), np.asarray(kl_random, np.float64)
    n = len(a)
    if n == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng([seed, 0xB0075])
    idx = rng.integers(0, n, size=(resamples, n))
    stats = a[idx].mean(1) - b[idx].mean(1)
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def rank(value: float, controls) -> int:
    """Rank of ``value`` among itself and ``controls``, 1 = highest (ties count against it: conservative)."""
    return 1 + int(np.sum(np.asarray(controls, np.float64) >= value))


def control_p_value(value: float, controls) -> float:
    """Permutation-style p-value of ``value`` against the controls' null: (1 + #controls >= it) / (1 + n)."""
    c = np.asarray(controls, np.float64)
    return float((1 + np.sum(c >= value)) / (1 + len(c)))


@dataclass(frozen=True)
class ClassTest:
    """The class-probability score of one class: the mean rise and its one-sided paired t-test."""
    k: int
    score: float     # mean_i [p_k(x_i + UF) - p_k(x_i)]
    t: float
    p_value: float   # H1: p_k rises with the UF

    @property
    def memorized(self) -> bool:
        return self.p_value < ALPHA


def class_probability_test(logp_clean: np.ndarray, logp_feature: np.ndarray, k: int | None = None) -> ClassTest:
    """``M_k`` and its one-sided paired t-test over the inputs; ``k`` None: the class with the largest
    ``M_k`` (the black-box variant; its p-value is then Bonferroni-corrected for the choice among C classes)."""
    from scipy import stats

    pc = np.exp(np.asarray(logp_clean, np.float64))
    pf = np.exp(np.asarray(logp_feature, np.float64))
    diffs = pf - pc  # [N, C]
    means = diffs.mean(0)
    chosen = int(np.argmax(means)) if k is None else int(k)
    if not 0 <= chosen < diffs.shape[1]:
        raise InvalidValueError(f"class {k} is not one of the model's {diffs.shape[1]} classes")
    d = diffs[:, chosen]
    if len(d) < 2 or np.allclose(d, d[0]):  # no spread: the t statistic is undefined
        t, p = (float("inf"), 0.0) if len(d) and d[0] > 0 else (float("nan"), 1.0)
    else:
        res = stats.ttest_1samp(d, 0.0, alternative="greater")  # = the paired test of pf vs pc
        t, p = float(res.statistic), float(res.pvalue)
    if k is None:
        p = min(1.0, p * diffs.shape[1])
    return ClassTest(chosen, float(means[chosen]), t, p)
