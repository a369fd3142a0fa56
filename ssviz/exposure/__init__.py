"""Exposure (the paper's section 4): how much more likely a secret is than chance.

* :mod:`~ssviz.exposure.estimators`: the arithmetic over arrays of log-perplexities
  (interpolation, skew-normal extrapolation, bootstrap intervals, fixed-bin histograms);
* :mod:`~ssviz.exposure.methods`: the ways to measure a secret in a model, behind one
  registry (:data:`METHODS`: exact, sampled, skewnorm, search) and :func:`measure`;
* :mod:`~ssviz.exposure.sharded`: exact enumeration in shards over an executor, resumable;
* :mod:`~ssviz.exposure.secret`: one secret by every method that applies, and whether it is extracted;
* :mod:`~ssviz.exposure.result`: :class:`ExposureResult`, what every method returns.
"""

from ssviz.exposure.estimators import (
    FIT_SAMPLE,
    HIST_BIN_BITS,
    HIST_MAX_BITS,
    LOG2E,
    Histogram,
    NoFit,
    SkewNormalFit,
    bootstrap_ci,
    exposure_at_rank,
    exposure_of,
    extrapolation,
    fit_indices,
    fit_or_none,
    fit_skewnorm,
    fit_subsample,
    interpolation,
    rank_among,
    skewnorm_logcdf,
    tail_logcdf,
)
from ssviz.exposure.methods import (ESTIMATES, METHODS, Method, Plan, certified, exact, fit_problems, measure, plan,
                                    sampled, search, skewnorm)
from ssviz.exposure.result import ExposureResult
from ssviz.exposure.secret import EXPOSURE_ORDER, measure_secret, primary
from ssviz.exposure.sharded import (
    SHARD_SCHEMA_DDL,
    SHARDED_LIMIT,
    ShardStore,
    count_range,
    secret_task,
    shard_plan,
    shard_task,
    sharded_exact,
)

__all__ = [
    "ESTIMATES", "EXPOSURE_ORDER", "FIT_SAMPLE", "HIST_BIN_BITS", "HIST_MAX_BITS", "LOG2E", "METHODS",
    "SHARDED_LIMIT", "SHARD_SCHEMA_DDL", "ExposureResult", "Histogram", "Method", "NoFit", "ShardStore",
    "SkewNormalFit", "Plan", "certified", "fit_problems", "plan", "bootstrap_ci", "count_range", "exact", "exposure_at_rank", "exposure_of",
    "extrapolation", "fit_indices", "fit_or_none", "fit_skewnorm", "fit_subsample", "interpolation", "measure",
    "measure_secret", "primary", "rank_among", "sampled", "search", "secret_task", "shard_plan", "shard_task",
    "sharded_exact", "skewnorm", "skewnorm_logcdf", "tail_logcdf",
]
