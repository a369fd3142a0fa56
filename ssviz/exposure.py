"""Exposure (the paper's section 4): how much more likely a secret is than chance.

The two estimators are pure functions over arrays of log-perplexities so they
can be checked against other implementations:

* :func:`interpolation` (TF Privacy's convention): rank = 1 + #references with
  log-perplexity <= the secret's; exposure = log2(m) - log2(rank).
* :func:`extrapolation`: fit a skew-normal to the references; exposure =
  -log2 CDF(secret), computed in log space so it stays finite far in the tail.

The fronts :func:`exact`, :func:`sampled`, :func:`skewnorm` and :func:`measure`
score fillers with a model and return an :class:`ExposureResult`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import integrate, special, stats

from ssviz.errors import InvalidValueError, NonFiniteError, SettingsError, SsvizError, clip
from ssviz.memory import ensure_memory
from ssviz.models.base import LanguageModel
from ssviz.scoring import EXHAUSTIVE_LIMIT, Progress, StopFlag, check_exhaustive, score_digits, score_space
from ssviz.templates import Template

LOG2E = 1.0 / math.log(2.0)
METHODS = ("exact", "sampled", "skewnorm", "auto")


def _finite(name: str, values) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 0:
        arr = arr[None]
    if arr.size == 0:
        raise InvalidValueError(f"{name} is empty")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise NonFiniteError(f"{name} contains {int(bad.sum())} NaN or infinite value(s) (first at index "
                         f"{int(np.flatnonzero(bad)[0])}): exposure needs finite log-perplexities")
    return arr


# --- estimators over arrays --------------------------------------------------------------
def interpolation(secret_lps, reference_lps) -> np.ndarray:
    """Exposure by rank among m references (ties count against the secret), in input order."""
    secrets = _finite("secret log-perplexities", secret_lps)
    refs = np.sort(_finite("reference log-perplexities", reference_lps))
    rank = 1 + np.searchsorted(refs, secrets, side="right")
    return np.log2(len(refs)) - np.log2(rank)


def skewnorm_logcdf(x, a: float, loc: float, scale: float) -> np.ndarray:
    """Natural log of the skew-normal CDF, accurate far into the left tail.

    scipy's ``logcdf`` underflows to -inf (or loses all digits) once the CDF
    drops below ~1e-300. There we write CDF(z) = pdf(z) * I(z) with
    I(z) = int_0^inf pdf(z-u)/pdf(z) du, whose integrand is bounded, and
    integrate it numerically with log_ndtr keeping every factor in log space.
    """
    z = (np.atleast_1d(np.asarray(x, dtype=np.float64)) - loc) / scale
    out = np.asarray(stats.skewnorm.logcdf(z, a), dtype=np.float64)
    for i in np.flatnonzero(~np.isfinite(out) | (out < -600.0)):
        out[i] = _tail_logcdf(float(z[i]), a)
    return out


def _log_pdf(z: float, a: float) -> float:
    return math.log(2.0) - 0.5 * z * z - 0.5 * math.log(2 * math.pi) + float(special.log_ndtr(a * z))


def _tail_logcdf(z: float, a: float) -> float:
    if z >= 0:
        return float(stats.skewnorm.logcdf(z, a))
    base = _log_pdf(z, a)
    # the integrand decays at least like exp(-|z| (1 + a+^2) u): integrate over many of its scales
    width = 1.0 / (abs(z) * (1.0 + max(a, 0.0) ** 2))
    val, _ = integrate.quad(lambda u: math.exp(_log_pdf(z - u, a) - base), 0.0, 200 * width,
                            limit=200, epsabs=0.0, epsrel=1e-10)
    return base + math.log(val)


@dataclass
class SkewNormalFit:
    a: float
    loc: float
    scale: float
    ks_pvalue: float

    def logcdf(self, x) -> np.ndarray:
        return skewnorm_logcdf(x, self.a, self.loc, self.scale)

    def params(self) -> dict:
        return {"a": self.a, "loc": self.loc, "scale": self.scale}

    def pdf(self, x) -> np.ndarray:
        return stats.skewnorm.pdf(x, self.a, self.loc, self.scale)


def fit_skewnorm(reference_lps) -> SkewNormalFit:
    refs = _finite("reference log-perplexities", reference_lps)
    if len(refs) < 10 or np.ptp(refs) == 0:
        raise InvalidValueError("a skew-normal fit needs at least 10 references that are not all equal")
    a, loc, scale = stats.skewnorm.fit(refs)
    p = float(stats.kstest(refs, "skewnorm", args=(a, loc, scale)).pvalue)
    return SkewNormalFit(float(a), float(loc), float(scale), p)


def extrapolation(secret_lps, reference_lps, fit: SkewNormalFit | None = None) -> np.ndarray:
    """Exposure = -log2 CDF of the skew-normal fitted to the references, in input order."""
    secrets = _finite("secret log-perplexities", secret_lps)
    fit = fit or fit_skewnorm(reference_lps)
    return -fit.logcdf(secrets) * LOG2E


# --- fronts that score with a model ------------------------------------------------------
@dataclass
class ExposureResult:
    exposure: float
    method: str
    space_size: int
    log_perplexity: float
    rank: int | None = None
    samples: int | None = None
    ks_pvalue: float | None = None
    ci: list[float] | None = None
    skewnorm: dict | None = None
    reference_lps: np.ndarray | None = field(default=None, repr=False)

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("reference_lps")
        d["log2_space_size"] = math.log2(self.space_size)
        return d


def _bootstrap_ci(estimate, secret_lp: float, refs: np.ndarray, n_boot: int, seed: int,
                  level: float = 0.95) -> list[float]:
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_boot):
        vals.append(float(estimate(secret_lp, refs[rng.integers(0, len(refs), len(refs))])))
    lo, hi = np.quantile(vals, [(1 - level) / 2, (1 + level) / 2])
    return [float(lo), float(hi)]


def exact(model: LanguageModel, template: Template, secret: str, *, limit: int = EXHAUSTIVE_LIMIT,
          progress: Progress | None = None, stop: StopFlag | None = None) -> ExposureResult:
    """Enumerate the space: rank = #fillers with log-perplexity <= the secret's (itself included)."""
    check_exhaustive(template, limit)
    lps = score_space(model, template, limit=limit, progress=progress, stop=stop)
    secret_lp = float(lps[template.index_of(secret)])
    rank = int(np.count_nonzero(lps <= secret_lp))
    fit = _fit_subsample(lps)
    return ExposureResult(math.log2(template.space_size) - math.log2(rank), "exact", template.space_size,
                          secret_lp, rank=rank, samples=len(lps), ks_pvalue=fit.ks_pvalue,
                          skewnorm=fit.params(), reference_lps=lps)


class _NoFit:
    ks_pvalue = None

    @staticmethod
    def params():
        return None


def _fit_subsample(lps: np.ndarray, size: int = 20_000, seed: int = 0):
    """The skew-normal fit shown beside exact and sampled results (on a seeded subsample: fitting is O(n)).

    Tiny spaces cannot be fitted; they get no fit rather than an error, since the exact rank stands alone.
    """
    if len(lps) > size:
        lps = lps[np.random.default_rng(seed).choice(len(lps), size, replace=False)]
    try:
        return fit_skewnorm(lps)
    except SsvizError:
        return _NoFit()


def _sample(model, template, secret, samples, seed, progress, stop):
    if not isinstance(samples, (int, np.integer)) or isinstance(samples, bool) or samples < 10:
        raise SettingsError(f"use a whole number of at least 10 samples, got {samples!r}")
    # random fillers, their token rows and the sort order exist at once
    ensure_memory(samples * (template.filler_length + 2 * len(template.positions) + 4) * 8,
                  f"{samples:,} random fillers", "use fewer samples")
    digits = template.random_digits(samples, np.random.default_rng(seed))
    secret_digits = template.fillers_to_digits([secret])
    lps = score_digits(model, template, np.concatenate([secret_digits, digits]), progress=progress, stop=stop)
    return float(lps[0]), lps[1:]


def sampled(model: LanguageModel, template: Template, secret: str, *, samples: int = 10_000, seed: int = 0,
            n_boot: int = 200, progress: Progress | None = None, stop: StopFlag | None = None) -> ExposureResult:
    """Rank among m uniformly random fillers (TF Privacy's interpolation); capped at log2(m)."""
    secret_lp, refs = _sample(model, template, secret, samples, seed, progress, stop)
    exp = float(interpolation([secret_lp], refs)[0])
    ci = _bootstrap_ci(lambda s, r: interpolation([s], r)[0], secret_lp, refs, n_boot, seed + 1)
    fit = _fit_subsample(refs)
    return ExposureResult(exp, "sampled", template.space_size, secret_lp, samples=samples, ci=ci,
                          ks_pvalue=fit.ks_pvalue, skewnorm=fit.params(), reference_lps=refs)


def skewnorm(model: LanguageModel, template: Template, secret: str, *, samples: int = 10_000, seed: int = 0,
             n_boot: int = 50, progress: Progress | None = None, stop: StopFlag | None = None) -> ExposureResult:
    """Skew-normal extrapolation from m uniformly random fillers (the paper's section 4.3)."""
    secret_lp, refs = _sample(model, template, secret, samples, seed, progress, stop)
    fit = fit_skewnorm(refs)
    exp = float(extrapolation([secret_lp], refs, fit)[0])
    ci = _bootstrap_ci(lambda s, r: extrapolation([s], r)[0], secret_lp, refs, n_boot, seed + 1)
    return ExposureResult(exp, "skewnorm", template.space_size, secret_lp, samples=samples,
                          ks_pvalue=fit.ks_pvalue, ci=ci,
                          skewnorm=fit.params(), reference_lps=refs)


def measure(model: LanguageModel, template: Template, secret: str, method: str = "auto", *,
            samples: int = 10_000, seed: int = 0, limit: int = EXHAUSTIVE_LIMIT, **kw) -> ExposureResult:
    """One entry point: ``auto`` is exact when |R| <= limit, otherwise skew-normal."""
    if method not in METHODS:
        raise SettingsError(f"unknown exposure method {clip(repr(method), 40)}: expected one of {', '.join(METHODS)}")
    template.check_vocab(model.vocab)
    secret = template.normalize(secret)
    if method == "auto":
        method = "exact" if template.space_size <= limit else "skewnorm"
    if method == "exact":
        return exact(model, template, secret, limit=limit, **kw)
    if method == "sampled":
        return sampled(model, template, secret, samples=samples, seed=seed, **kw)
    return skewnorm(model, template, secret, samples=samples, seed=seed, **kw)


def exposure_of(result: ExposureResult, log_perplexities) -> list[dict]:
    """Exposure of other fillers (their log-perplexities, bits) by the estimator and references of ``result``.

    Comparing a control or a second secret is only fair against the same
    references the headline number used, so no new fillers are scored:
    ``exact`` ranks among all enumerated log-perplexities, ``sampled``
    interpolates among the sample, ``skewnorm`` extrapolates with the fitted
    parameters. A result that kept no references (``search``) gives NaN.
    Returns ``[{"exposure", "rank"}]`` in input order (rank only for exact).
    """
    lps = _finite("log-perplexities", log_perplexities)
    refs = result.reference_lps
    if result.method == "exact" and refs is not None:
        ranks = np.maximum(np.searchsorted(np.sort(refs), lps, side="right"), 1)  # each filler is in the space
        return [{"exposure": math.log2(result.space_size) - math.log2(int(r)), "rank": int(r)} for r in ranks]
    if result.method == "skewnorm" and result.skewnorm:
        fit = SkewNormalFit(**result.skewnorm, ks_pvalue=result.ks_pvalue or float("nan"))
        return [{"exposure": float(e), "rank": None} for e in extrapolation(lps, refs, fit)]
    if result.method == "sampled" and refs is not None:
        return [{"exposure": float(e), "rank": None} for e in interpolation(lps, refs)]
    return [{"exposure": float("nan"), "rank": None} for _ in lps]
