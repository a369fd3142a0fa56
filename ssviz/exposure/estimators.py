"""Exposure's arithmetic over arrays of log-perplexities: no model, no files, no torch.

Pure so it can be checked against other implementations and reused by every
method (exact, sampled, skew-normal, sharded, search):

* :func:`interpolation` (TF Privacy's convention): rank = 1 + #references with
  log-perplexity <= the secret's; exposure = log2(m) - log2(rank).
* :func:`extrapolation`: fit a skew-normal to the references; exposure =
  -log2 CDF(secret), computed in log space so it stays finite far in the tail.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import integrate, special, stats

from ssviz.errors import InvalidValueError, SsvizError
from ssviz.checks import finite_array
from ssviz.exposure.result import ExposureResult

LOG2E = 1.0 / math.log(2.0)
HIST_BIN_BITS = 1 / 16    # exact results' histogram: fixed bins, so shards add up exactly
HIST_MAX_BITS = 4096      # ... and its last bin: a histogram is at most 65,537 counts
FIT_SAMPLE = 20_000       # fillers the skew-normal beside an exact or sampled result is fitted on


def _finite(name: str, values) -> np.ndarray:
    return finite_array(name, values, "exposure needs finite log-perplexities", nonempty=True)


# --- rank and exposure ---------------------------------------------------------------------
def exposure_at_rank(space_size: int, rank: float) -> float:
    """log2|R| - log2(rank): 0 for a typical filler, log2|R| for the most likely one."""
    return math.log2(space_size) - math.log2(rank)


def rank_among(lps: np.ndarray, secret_lp: float) -> int:
    """Fillers at least as likely as the secret (log-perplexity <= its own), itself included."""
    return int(np.count_nonzero(lps <= secret_lp))


def interpolation(secret_lps, reference_lps) -> np.ndarray:
    """Exposure by rank among m references (ties count against the secret), in input order."""
    secrets = _finite("secret log-perplexities", secret_lps)
    refs = np.sort(_finite("reference log-perplexities", reference_lps))
    rank = 1 + np.searchsorted(refs, secrets, side="right")
    return np.log2(len(refs)) - np.log2(rank)


# --- the skew-normal -----------------------------------------------------------------------
def skewnorm_logcdf(x, a: float, loc: float, scale: float) -> np.ndarray:
    """Natural log of the skew-normal CDF, accurate far into the left tail.

    scipy's ``logcdf`` underflows to -inf (or loses all digits) once the CDF
    drops below ~1e-300; there :func:`tail_logcdf` takes over.
    """
    z = (np.atleast_1d(np.asarray(x, dtype=np.float64)) - loc) / scale
    out = np.asarray(stats.skewnorm.logcdf(z, a), dtype=np.float64)
    for i in np.flatnonzero(~np.isfinite(out) | (out < -600.0)):
        out[i] = tail_logcdf(float(z[i]), a)
    return out


def _log_pdf(z: float, a: float) -> float:
    return math.log(2.0) - 0.5 * z * z - 0.5 * math.log(2 * math.pi) + float(special.log_ndtr(a * z))


def tail_logcdf(z: float, a: float) -> float:
    """log CDF of the standard skew-normal at ``z``, finite however far into the left tail.

    We write CDF(z) = pdf(z) * I(z) with I(z) = int_0^inf pdf(z-u)/pdf(z) du, whose
    integrand is bounded, and integrate it numerically with log_ndtr keeping every
    factor in log space.
    """
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


class NoFit:
    """Stands in for a fit where the space is too small to fit (the exact rank stands alone)."""

    ks_pvalue = None

    @staticmethod
    def params():
        return None


def fit_or_none(lps: np.ndarray) -> SkewNormalFit | NoFit:
    """The fit, or :class:`NoFit` for spaces too small to fit."""
    try:
        return fit_skewnorm(lps)
    except SsvizError:
        return NoFit()


def fit_indices(n: int, size: int = FIT_SAMPLE, seed: int = 0) -> np.ndarray:
    """The fillers the skew-normal beside an exact result is fitted on: a seeded subsample (fitting is O(n)),
    sorted, so a sharded run can pick the same ones out of its shards."""
    if n <= size:
        return np.arange(n, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def fit_subsample(lps: np.ndarray) -> SkewNormalFit | NoFit:
    """The skew-normal shown beside exact and sampled results, fitted on the same seeded subsample."""
    return fit_or_none(lps[fit_indices(len(lps))])


def bootstrap_ci(estimate, secret_lp: float, refs: np.ndarray, n_boot: int, seed: int,
                 level: float = 0.95) -> list[float]:
    """Percentile interval of ``estimate(secret_lp, refs)`` over ``n_boot`` resamples of the references."""
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_boot):
        vals.append(float(estimate(secret_lp, refs[rng.integers(0, len(refs), len(refs))])))
    lo, hi = np.quantile(vals, [(1 - level) / 2, (1 + level) / 2])
    return [float(lo), float(hi)]


# --- fixed-bin histograms ------------------------------------------------------------------
@dataclass
class Histogram:
    """Counts of log-perplexities in fixed bins ``[k, k+1) * bin_bits`` for ``k = first ..``.

    Fixed bins make histograms of shards add up exactly, in any order, to the
    histogram of the whole space.
    """

    first: int
    counts: np.ndarray  # int64
    bin_bits: float = HIST_BIN_BITS

    @classmethod
    def of(cls, lps: np.ndarray, bin_bits: float = HIST_BIN_BITS) -> "Histogram":
        """Log-perplexities beyond ``HIST_MAX_BITS`` count in the last bin (a dense array stays small)."""
        if len(lps) == 0:
            return cls(0, np.zeros(0, dtype=np.int64), bin_bits)
        top = int(HIST_MAX_BITS / bin_bits)
        bins = np.clip(np.floor(np.asarray(lps, dtype=np.float64) / bin_bits), 0, top).astype(np.int64)
        first = int(bins.min())
        return cls(first, np.bincount(bins - first).astype(np.int64), bin_bits)

    def add(self, other: "Histogram") -> "Histogram":
        if not len(other.counts):
            return self
        if not len(self.counts):
            return Histogram(other.first, other.counts.copy(), self.bin_bits)
        first = min(self.first, other.first)
        last = max(self.first + len(self.counts), other.first + len(other.counts))
        out = np.zeros(last - first, dtype=np.int64)
        out[self.first - first:self.first - first + len(self.counts)] += self.counts
        out[other.first - first:other.first - first + len(other.counts)] += other.counts
        return Histogram(first, out, self.bin_bits)

    @property
    def edges(self) -> np.ndarray:
        return (self.first + np.arange(len(self.counts) + 1)) * self.bin_bits

    def at_or_below(self, lps) -> np.ndarray:
        """Estimated number of fillers with log-perplexity <= each value (linear within a bin)."""
        cum = np.concatenate([[0], np.cumsum(self.counts)])
        pos = np.clip((np.asarray(lps, dtype=np.float64) / self.bin_bits) - self.first, 0, len(self.counts))
        k = np.minimum(np.floor(pos).astype(np.int64), max(len(self.counts) - 1, 0))
        return cum[k] + (pos - k) * np.append(self.counts, 0)[k]

    def coarse(self, bars: int = 60) -> tuple[np.ndarray, np.ndarray]:
        """(counts, edges) with about ``bars`` bars over the occupied range, for a figure."""
        group = max(1, -(-len(self.counts) // bars))
        padded = np.zeros(-(-len(self.counts) // group) * group, dtype=np.int64)
        padded[:len(self.counts)] = self.counts
        counts = padded.reshape(-1, group).sum(1)
        edges = (self.first + group * np.arange(len(counts) + 1)) * self.bin_bits
        return counts, edges

    def to_json(self) -> dict:
        return {"bin_bits": self.bin_bits, "first_bin": self.first, "counts": self.counts.tolist()}

    @classmethod
    def from_json(cls, d: dict) -> "Histogram":
        return cls(int(d["first_bin"]), np.asarray(d["counts"], dtype=np.int64), float(d["bin_bits"]))


# --- other fillers against a result --------------------------------------------------------
def exposure_of(result: ExposureResult, log_perplexities) -> list[dict]:
    """Exposure of other fillers (their log-perplexities, bits) by the estimator and references of ``result``.

    Comparing a control or a second secret is only fair against the same
    references the headline number used, so no new fillers are scored:
    ``exact`` ranks among all enumerated log-perplexities, ``sampled``
    interpolates among the sample, ``skewnorm`` extrapolates with the fitted
    parameters; a sharded exact result kept only its histogram, so ranks are
    interpolated within a bin (no rank is claimed). A result that kept no
    references (``search``) gives NaN.
    Returns ``[{"exposure", "rank"}]`` in input order (rank only for exact).
    """
    lps = _finite("log-perplexities", log_perplexities)
    refs = result.reference_lps
    if result.method == "exact" and refs is not None:
        ranks = np.maximum(np.searchsorted(np.sort(refs), lps, side="right"), 1)  # each filler is in the space
        return [{"exposure": exposure_at_rank(result.space_size, int(r)), "rank": int(r)} for r in ranks]
    if result.method == "exact" and result.histogram:  # sharded: no scores kept, ranks within a bin
        ranks = np.maximum(Histogram.from_json(result.histogram).at_or_below(lps), 1.0)
        return [{"exposure": exposure_at_rank(result.space_size, float(r)), "rank": None} for r in ranks]
    if result.method == "skewnorm" and result.skewnorm:
        fit = SkewNormalFit(**result.skewnorm, ks_pvalue=result.ks_pvalue or float("nan"))
        return [{"exposure": float(e), "rank": None} for e in extrapolation(lps, refs, fit)]
    if result.method == "sampled" and refs is not None:
        return [{"exposure": float(e), "rank": None} for e in interpolation(lps, refs)]
    return [{"exposure": float("nan"), "rank": None} for _ in lps]
