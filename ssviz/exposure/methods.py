"""The ways to measure a secret's exposure in a model, behind one registry.

Every method is ``fn(model, template, secret, *, progress=None, stop=None, **options) -> ExposureResult``
with keyword options of its own (``samples``, ``limit``, ``max_nodes`` ...), and :data:`METHODS` names them,
so :func:`measure`, the CLI and the pages choose a method by name and call it one way.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from ssviz.errors import SettingsError
from ssviz.messages import clip
from ssviz.exposure.estimators import (Histogram, bootstrap_ci, exposure_at_rank, extrapolation, fit_skewnorm,
                                       fit_subsample, interpolation, rank_among)
from ssviz.exposure.result import ExposureResult
from ssviz.exposure.sharded import SHARDED_LIMIT, sharded_exact
from ssviz.memory import ensure_memory
from ssviz.models.base import LanguageModel
from ssviz.progress import Progress, StopFlag
from ssviz.scoring import (EXHAUSTIVE_LIMIT, SPACE_CHUNK, TrieScorer, check_exhaustive,
                           human_seconds, score_digits, score_space)
from ssviz.templates import Template

Method = Callable[..., ExposureResult]
FIT_PVALUE = 0.01             # a skew-normal fit rejected below this KS p-value is not reported as the answer
EXACT_BUDGET_SECONDS = 60.0   # auto enumerates exactly when that takes at most this long here
SMALL_SPACE = 1 << 13        # enumerated without measuring anything first
FALLBACK_NODES = 200_000      # the search that replaces a rejected estimate: its node and time budgets
FALLBACK_SECONDS = 60.0


def exact(model: LanguageModel, template: Template, secret: str, *, limit: int | None = None,
          progress: Progress | None = None, stop: StopFlag | None = None, executor=None,
          shard_size: int | None = None, chunk_size: int = SPACE_CHUNK, store=None) -> ExposureResult:
    """Enumerate the space: rank = #fillers with log-perplexity <= the secret's (itself included).

    Without ``executor`` every score is held in memory (``reference_lps``; spaces up to
    ``limit``, default 10^7). With an :class:`~ssviz.executor.Executor` the space is cut
    into shards scored by workers, each returning counts and a fixed-bin histogram, so
    no score is held anywhere: spaces up to ``limit`` (default 10^10). ``store`` (a
    path) keeps finished shards, so a stopped or killed run resumes where it was.
    Both give the same rank, histogram and fit, value for value.
    """
    if executor is not None:
        return sharded_exact(model, template, secret, executor, limit=limit or SHARDED_LIMIT,
                             shard_size=shard_size, chunk_size=chunk_size, store=store, progress=progress, stop=stop)
    check_exhaustive(template, limit or EXHAUSTIVE_LIMIT, hint="use sampling / skew-normal or search, or "
                     f"enumerate it in shards with an executor (--executor local|ray, up to {SHARDED_LIMIT:,} fillers)")
    lps = score_space(model, template, limit=limit or EXHAUSTIVE_LIMIT, chunk_size=chunk_size, progress=progress,
                      stop=stop)
    secret_lp = float(lps[template.index_of(secret)])
    rank = rank_among(lps, secret_lp)
    fit = fit_subsample(lps)
    return ExposureResult(exposure_at_rank(template.space_size, rank), "exact", template.space_size,
                          secret_lp, rank=rank, samples=len(lps), ks_pvalue=fit.ks_pvalue,
                          skewnorm=fit.params(), reference_lps=lps,
                          histogram=Histogram.of(lps).to_json())


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
    ci = bootstrap_ci(lambda s, r: interpolation([s], r)[0], secret_lp, refs, n_boot, seed + 1)
    fit = fit_subsample(refs)
    result = ExposureResult(exp, "sampled", template.space_size, secret_lp, samples=samples, ci=ci,
                            ks_pvalue=fit.ks_pvalue, skewnorm=fit.params(), reference_lps=refs)
    beyond = secret_lp < float(refs.min())
    result.fit_ok = not beyond
    if beyond:
        result.warning = (f"the secret is more likely than all {len(refs):,} sampled fillers: {exp:.2f} bits is the "
                          f"most {len(refs):,} samples can show, a lower bound (use search or exact for the rank)")
    return result


def skewnorm(model: LanguageModel, template: Template, secret: str, *, samples: int = 10_000, seed: int = 0,
             n_boot: int = 50, progress: Progress | None = None, stop: StopFlag | None = None) -> ExposureResult:
    """Skew-normal extrapolation from m uniformly random fillers (the paper's section 4.3)."""
    secret_lp, refs = _sample(model, template, secret, samples, seed, progress, stop)
    fit = fit_skewnorm(refs)
    exp = float(extrapolation([secret_lp], refs, fit)[0])
    ci = bootstrap_ci(lambda s, r: extrapolation([s], r)[0], secret_lp, refs, n_boot, seed + 1)
    result = ExposureResult(exp, "skewnorm", template.space_size, secret_lp, samples=samples,
                            ks_pvalue=fit.ks_pvalue, ci=ci, skewnorm=fit.params(), reference_lps=refs)
    problems = fit_problems(result)
    result.fit_ok = not problems
    if problems:
        result.warning = "do not trust this estimate: " + "; ".join(problems)
    return result


def fit_problems(result: ExposureResult) -> list[str]:
    """Why a skew-normal estimate cannot be trusted, in plain words (empty: its checks pass)."""
    problems = []
    if result.ks_pvalue is not None and not result.ks_pvalue >= FIT_PVALUE:
        problems.append(f"the skew-normal fit fails its goodness-of-fit test (KS p = {result.ks_pvalue:.3g}, "
                        f"below {FIT_PVALUE})")
    refs = result.reference_lps
    if refs is not None and len(refs) and result.log_perplexity < float(np.min(refs)):
        problems.append(f"the secret is more likely than all {len(refs):,} sampled fillers, so the number is "
                        "pure extrapolation of the fitted tail")
    return problems


def search(model: LanguageModel, template: Template, secret: str, *, max_nodes: int = 200_000,
           batch_size: int = 64, max_seconds: float | None = None, max_memory_mb: float | None = None,
           progress: Progress | None = None, stop: StopFlag | None = None) -> ExposureResult:
    """Exact rank by best-first enumeration from the most likely filler (:func:`ssviz.extraction.search_exposure`):
    exact exposure in spaces too large to enumerate, when the secret comes out within the budget."""
    from ssviz.extraction import search_exposure  # imported here: ssviz.extraction imports this package
    memory = {} if max_memory_mb is None else {"max_memory_mb": max_memory_mb}
    return search_exposure(model, template, secret, max_nodes=max_nodes, batch_size=batch_size,
                           max_seconds=max_seconds, progress=progress, stop=stop, **memory)


METHODS: dict[str, Method] = {"exact": exact, "sampled": sampled, "skewnorm": skewnorm, "search": search}
# what --method offers where a number must come out (search may run out of its budget), in the CLI's order
ESTIMATES = ("exact", "sampled", "skewnorm", "auto")


@dataclass
class Plan:
    """What ``auto`` will do and why, known before the work starts."""

    method: str
    reason: str
    exact_seconds: float | None = None  # estimated time of exact enumeration on this machine
    rate: float | None = None           # fillers per second measured for this model and template

    def to_json(self) -> dict:
        return asdict(self)


def plan(model: LanguageModel, template: Template, *, limit: int | None = None,
         budget: float = EXACT_BUDGET_SECONDS) -> Plan:
    """``exact`` when enumerating the space fits ``budget`` seconds at this model's measured rate (and
    memory: |R| <= ``limit``, default 10^7), else ``skewnorm`` (checked, and replaced by a certified
    search when its checks fail: see :func:`measure`)."""
    size, limit = template.space_size, limit or EXHAUSTIVE_LIMIT
    if size > limit:
        return Plan("skewnorm", f"|R| = {size:.3g} is more than exact enumeration holds in memory ({limit:.3g})")
    if size <= SMALL_SPACE:
        return Plan("exact", f"|R| = {size:,} is small enough to enumerate")
    rate = TrieScorer(model, template).rate()
    seconds = size / rate
    if seconds <= budget:
        return Plan("exact", f"enumerating |R| = {size:.3g} takes about {human_seconds(seconds)} here, within the "
                             f"budget of {human_seconds(budget)}", seconds, rate)
    return Plan("skewnorm", f"enumerating |R| = {size:.3g} would take about {human_seconds(seconds)} here, over "
                            f"the budget of {human_seconds(budget)}", seconds, rate)


def certified(model: LanguageModel, template: Template, secret: str, estimate: ExposureResult, *,
              max_nodes: int | None = None, max_seconds: float | None = None,
              progress: Progress | None = None, stop: StopFlag | None = None) -> ExposureResult:
    """Exposure by search in place of an estimate whose checks failed: the certified rank when the search
    reaches it, else a certified bound (every filler it enumerated is at least as likely as the secret),
    with the estimate beside it and a warning either way."""
    from ssviz.extraction import SearchBudgetError
    why = "; ".join(fit_problems(estimate))
    try:
        result = search(model, template, secret, max_nodes=max_nodes or FALLBACK_NODES,
                        max_seconds=max_seconds or FALLBACK_SECONDS, progress=progress, stop=stop)
        result.warning = f"the skew-normal estimate ({estimate.exposure:.2f} bits) was rejected ({why}); this is " \
                         "the exact rank found by search"
    except SearchBudgetError as e:
        lower = e.rank_lower_bound or 1
        result = ExposureResult(e.exposure_upper_bound if e.exposure_upper_bound is not None
                                else exposure_at_rank(template.space_size, lower), "search-bound",
                                template.space_size, estimate.log_perplexity, rank_lower_bound=lower)
        result.warning = (f"the skew-normal estimate ({estimate.exposure:.2f} bits) was rejected ({why}), and "
                          f"search stopped before reaching the secret: at least {lower:,} fillers are at least as "
                          f"likely, so exposure is at most {result.exposure:.2f} bits")
    result.fit_ok = False
    result.estimate = estimate.to_json()
    return result


@functools.cache
def _options_of(fn: Method) -> frozenset[str]:
    return frozenset(p.name for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY)


def measure(model: LanguageModel, template: Template, secret: str, method: str = "auto", *,
            limit: int | None = None, budget: float = EXACT_BUDGET_SECONDS,
            announce: Callable[[Plan], None] | None = None, **options) -> ExposureResult:
    """One entry point: ``method`` is a name in :data:`METHODS` or ``auto``.

    ``auto`` chooses by estimated cost (:func:`plan`: exact enumeration within ``budget`` seconds,
    else skew-normal; ``announce(plan)`` hears the choice before the work starts) and checks what it gets: a skew-normal estimate whose fit fails or that
    only extrapolates is replaced by exposure by search (:func:`certified`).

    ``limit`` bounds exact enumeration (and where ``auto`` switches). The other keywords are
    the methods' options: the chosen method gets its own, an option only other methods
    take is left out (one call can carry options for whichever method ``auto`` picks),
    and one no method takes is an error. With ``executor`` (an option of :func:`exact`),
    exact enumeration is sharded and goes up to 10^10 fillers.
    """
    if method != "auto" and method not in METHODS:
        raise SettingsError(f"unknown exposure method {clip(repr(method), 40)}: expected one of "
                            f"{', '.join([*METHODS, 'auto'])}")
    unknown = set(options).difference(*map(_options_of, METHODS.values()))
    if unknown:
        raise TypeError(f"measure() got unexpected keyword argument(s) {', '.join(sorted(unknown))}")
    template.check_vocab(model.vocab)
    secret = template.normalize(secret)
    chosen = plan(model, template, limit=limit, budget=budget) if method == "auto" else None
    if chosen is not None and announce is not None:
        announce(chosen)  # before the work: what auto does, and what exact would cost
    fn = METHODS[chosen.method if chosen else method]
    options["limit"] = limit
    result = fn(model, template, secret, **{k: v for k, v in options.items() if k in _options_of(fn)})
    if chosen is not None:
        if result.fit_ok is False and fn is skewnorm:
            result = certified(model, template, secret, result, progress=options.get("progress"),
                               stop=options.get("stop"))
        result.plan = chosen.to_json()
    return result
