"""Counterfactual memorization and influence from a pool of models: pure, arrays in, numbers out.

A pool is ``included[M, N]`` (model m was trained on example n) and ``scores[M, N]`` (a per-example
metric of model m on example n: per-unit accuracy or mean log-likelihood). Zhang et al. (2021):

* ``mem(x) = mean over IN models of m(f, x) - mean over OUT models of m(f, x)``;
* ``infl(x -> x') = mean over models IN x of m(f, x') - mean over models OUT of x of m(f, x')``.

Uncertainty is over models, the only random thing a pool has: a Welch standard error (the two
means are independent) and a percentile bootstrap that resamples whole models, so an example
whose IN or OUT side has few models gets a wide interval. Everything the page, the CLI and the
report show is computed here from the matrices on disk, so the numbers can always be recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ssviz.errors import SettingsError

DEFAULT_BOOTSTRAP = 1000
DEFAULT_CONFIDENCE = 0.95
BOOTSTRAP_BLOCK = 100  # bootstrap replicates computed at once (memory: block x M x N)


@dataclass
class Estimate:
    """Per example: the estimate, its standard error, the bootstrap interval and the two sides' sizes."""

    value: np.ndarray
    se: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n_in: np.ndarray
    n_out: np.ndarray


def _check(included, scores) -> tuple[np.ndarray, np.ndarray]:
    inc = np.asarray(included)
    if inc.dtype != bool:
        if inc.dtype.kind not in "iuf" or not np.isin(inc, (0, 1)).all():
            raise SettingsError("the inclusion mask must be true/false (or 1/0) for every model and example")
        inc = inc.astype(bool)
    sc = np.asarray(scores, dtype=np.float64)
    if inc.ndim != 2 or sc.ndim != 2 or sc.shape[0] != inc.shape[0]:
        raise SettingsError(f"inclusion {inc.shape} and scores {sc.shape} must be [models, examples] with the "
                            f"same models")
    return inc, sc


def _side_means(weights: np.ndarray, inc: np.ndarray, sc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted means of ``sc`` over IN and OUT models; ``weights[..., M]`` counts each model (bootstrap)."""
    win = weights[..., :, None] * inc
    wout = weights[..., :, None] * ~inc
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_in = (win * sc).sum(-2) / win.sum(-2)
        mean_out = (wout * sc).sum(-2) / wout.sum(-2)
    return mean_in, mean_out


def difference(included, scores, *, bootstrap: int = DEFAULT_BOOTSTRAP, confidence: float = DEFAULT_CONFIDENCE,
               seed: int = 0) -> Estimate:
    """mean IN - mean OUT of ``scores[M, N]`` per column, split by ``included[M, N]``.

    NaN where a column has no IN or no OUT model, or a NaN score (an example too short to
    predict). The interval is the percentile bootstrap over models (``bootstrap`` replicates,
    seeded); replicates that left one side empty are dropped for that column.
    """
    inc, sc = _check(included, scores)
    if not 0 < confidence < 1:
        raise SettingsError(f"confidence must be between 0 and 1, got {confidence}")
    m = inc.shape[0]
    n_in, n_out = inc.sum(0), (~inc).sum(0)
    mean_in, mean_out = _side_means(np.ones(m), inc, sc)
    value = mean_in - mean_out
    with np.errstate(invalid="ignore", divide="ignore"):
        var_in = (inc * (sc - mean_in) ** 2).sum(0) / (n_in - 1)
        var_out = (~inc * (sc - mean_out) ** 2).sum(0) / (n_out - 1)
        se = np.sqrt(var_in / n_in + var_out / n_out)
    se = np.where((n_in > 1) & (n_out > 1), se, np.nan)
    low = np.full_like(value, np.nan)
    high = np.full_like(value, np.nan)
    if bootstrap > 0 and m > 1:
        rng = np.random.default_rng(seed)
        reps = []
        for start in range(0, bootstrap, BOOTSTRAP_BLOCK):
            b = min(BOOTSTRAP_BLOCK, bootstrap - start)
            w = rng.multinomial(m, np.full(m, 1.0 / m), size=b).astype(np.float64)
            bi, bo = _side_means(w, inc, sc)
            reps.append(bi - bo)
        reps = np.concatenate(reps)
        alpha = (1 - confidence) / 2
        with np.errstate(invalid="ignore"):
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: NaN, as documented
                low = np.nanquantile(reps, alpha, axis=0)
                high = np.nanquantile(reps, 1 - alpha, axis=0)
        defined = np.isfinite(value)
        low, high = np.where(defined, low, np.nan), np.where(defined, high, np.nan)
    return Estimate(value, se, low, high, n_in, n_out)


def memorization(included, scores, **kw) -> Estimate:
    """Counterfactual memorization of every training example (column) under a per-example metric."""
    return difference(included, scores, **kw)


def influence(included, target_scores) -> tuple[np.ndarray, np.ndarray]:
    """``(infl[N, K], se[N, K])``: how much including training example n changes the metric on target k.

    ``included[M, N]`` as for :func:`memorization`, ``target_scores[M, K]`` the metric of each model on
    each target (validation) example. NaN where example n has no IN or no OUT model.
    """
    inc, ts = _check(included, target_scores)
    f = inc.astype(np.float64)
    n_in, n_out = f.sum(0)[:, None], (1 - f).sum(0)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_in = f.T @ ts / n_in
        mean_out = (1 - f).T @ ts / n_out
        sq_in = f.T @ ts ** 2 / n_in - mean_in ** 2
        sq_out = (1 - f).T @ ts ** 2 / n_out - mean_out ** 2
        se = np.sqrt(np.clip(sq_in, 0, None) * n_in / (n_in - 1) / n_in
                     + np.clip(sq_out, 0, None) * n_out / (n_out - 1) / n_out)
    se = np.where((n_in > 1) & (n_out > 1), se, np.nan)
    return mean_in - mean_out, se


def top_pairs(infl: np.ndarray, se: np.ndarray | None = None, k: int = 10) -> list[tuple[int, int, float, float]]:
    """The ``k`` largest influences as ``(train index, target index, influence, se)``, each target once
    (a target's partner is the training example that helps it most), largest first."""
    infl = np.asarray(infl, dtype=np.float64)
    if infl.size == 0:
        return []
    filled = np.where(np.isfinite(infl), infl, -np.inf)
    best = filled.argmax(0)  # per target: the training example that helps it most
    gain = filled[best, np.arange(infl.shape[1])]
    order = [j for j in np.argsort(-gain, kind="stable") if np.isfinite(gain[j])][:k]
    return [(int(best[j]), int(j), float(infl[best[j], j]),
             float(se[best[j], j]) if se is not None else float("nan")) for j in order]
