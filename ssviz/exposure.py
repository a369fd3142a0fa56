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

import hashlib
import io
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import integrate, special, stats

from ssviz.errors import InvalidValueError, SettingsError, SsvizError, StoppedError, clip, finite_array
from ssviz.memory import ensure_memory
from ssviz.models.base import LanguageModel
from ssviz.scoring import (EXHAUSTIVE_LIMIT, SPACE_CHUNK, Progress, StopFlag, check_exhaustive, score_digits,
                           score_range, score_space)
from ssviz.templates import Template

LOG2E = 1.0 / math.log(2.0)
METHODS = ("exact", "sampled", "skewnorm", "auto")
SHARDED_LIMIT = 10 ** 10  # exact enumeration in shards: ~5 CPU-hours for the 2x200 demo (~550k fillers/s a core)
HIST_BIN_BITS = 1 / 16    # exact results' histogram: fixed bins, so shards add up exactly
HIST_MAX_BITS = 4096      # ... and its last bin: a histogram is at most 65,537 counts
FIT_SAMPLE = 20_000       # fillers the skew-normal beside an exact or sampled result is fitted on


def _finite(name: str, values) -> np.ndarray:
    return finite_array(name, values, "exposure needs finite log-perplexities", nonempty=True)


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
    histogram: dict | None = field(default=None, repr=False)  # exact: fixed-bin counts (Histogram.to_json)
    shards: dict | None = None  # sharded exact: how the run went (executor, shards, fillers per second)

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
        return _sharded_exact(model, template, secret, executor, limit=limit or SHARDED_LIMIT,
                              shard_size=shard_size, chunk_size=chunk_size, store=store, progress=progress,
                              stop=stop)
    check_exhaustive(template, limit or EXHAUSTIVE_LIMIT, hint="use sampling / skew-normal or search, or "
                     f"enumerate it in shards with an executor (--executor local|ray, up to {SHARDED_LIMIT:,} fillers)")
    lps = score_space(model, template, limit=limit or EXHAUSTIVE_LIMIT, chunk_size=chunk_size, progress=progress,
                      stop=stop)
    secret_lp = float(lps[template.index_of(secret)])
    rank = int(np.count_nonzero(lps <= secret_lp))
    fit = _fit_or_none(lps[fit_indices(len(lps))])
    return ExposureResult(math.log2(template.space_size) - math.log2(rank), "exact", template.space_size,
                          secret_lp, rank=rank, samples=len(lps), ks_pvalue=fit.ks_pvalue,
                          skewnorm=fit.params(), reference_lps=lps,
                          histogram=Histogram.of(lps).to_json())


class _NoFit:
    ks_pvalue = None

    @staticmethod
    def params():
        return None


def fit_indices(n: int, size: int = FIT_SAMPLE, seed: int = 0) -> np.ndarray:
    """The fillers the skew-normal beside an exact result is fitted on: a seeded subsample (fitting is O(n)),
    sorted, so a sharded run can pick the same ones out of its shards."""
    if n <= size:
        return np.arange(n, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def _fit_or_none(lps: np.ndarray):
    """The fit, or none for spaces too small to fit (the exact rank stands alone)."""
    try:
        return fit_skewnorm(lps)
    except SsvizError:
        return _NoFit()


def _fit_subsample(lps: np.ndarray):
    """The skew-normal fit shown beside sampled results (on the same seeded subsample as exact results)."""
    return _fit_or_none(lps[fit_indices(len(lps))])


# --- sharded exact enumeration -----------------------------------------------------------
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


def count_range(model: LanguageModel, template: Template, lo: int, hi: int, thresholds, *, sample=(),
                chunk_size: int = SPACE_CHUNK, bin_bits: float = HIST_BIN_BITS, stop: StopFlag | None = None,
                progress: Progress | None = None) -> dict:
    """Score fillers ``lo..hi-1`` with the trie scorer and keep only what adds up across shards.

    Returns ``at_or_below`` (per threshold, the number of fillers whose log-perplexity
    is <= it), the fixed-bin histogram (``first_bin``, ``counts``) and the scores of
    the filler numbers in ``sample`` (for the fit). Memory: one chunk.
    """
    thresholds = np.asarray(thresholds, dtype=np.float64)
    sample = np.asarray(sample, dtype=np.int64)
    at_or_below = np.zeros(len(thresholds), dtype=np.int64)
    hist = Histogram(0, np.zeros(0, dtype=np.int64), bin_bits)
    picked = np.empty(len(sample))
    for start, bits in score_range(model, template, lo, hi, chunk_size=chunk_size, stop=stop):
        at_or_below += np.searchsorted(np.sort(bits), thresholds, side="right")
        hist = hist.add(Histogram.of(bits, bin_bits))
        a, b = np.searchsorted(sample, [start, start + len(bits)])
        picked[a:b] = bits[sample[a:b] - start]
        if progress:
            progress(start + len(bits) - lo, hi - lo)
    return {"lo": lo, "hi": hi, "at_or_below": at_or_below.tolist(), "first_bin": hist.first,
            "counts": hist.counts.tolist(), "sample": picked.tolist()}


def _worker_model(task: dict) -> LanguageModel:
    from ssviz import executor
    from ssviz.models import load_checkpoint

    def load(data: bytes):
        named = io.BytesIO(data)
        named.name = task["model_name"]  # errors name the model as the user knows it
        return load_checkpoint(named)
    return executor.cached(task["model"], "checkpoint", load)


def shard_task(task: dict) -> dict:
    """Executor task: one shard of an exact enumeration (plain data in, plain counts out)."""
    from ssviz.executor import stop_flag
    t0, c0 = time.perf_counter(), time.process_time()
    out = count_range(_worker_model(task), Template(task["template"]), task["lo"], task["hi"], task["thresholds"],
                      sample=task["sample"], chunk_size=task["chunk"], bin_bits=task["bin_bits"], stop=stop_flag())
    out["seconds"] = time.perf_counter() - t0
    out["cpu_seconds"] = time.process_time() - c0  # below wall time when the machine is shared
    return out


def secret_task(task: dict) -> float:
    """Executor task: the secret's log-perplexity, scored in its own chunk exactly as the shards score it."""
    from ssviz.executor import stop_flag
    idx, chunk, size = task["index"], task["chunk"], task["space_size"]
    lo = idx // chunk * chunk
    for _, bits in score_range(_worker_model(task), Template(task["template"]), lo, min(lo + chunk, size),
                               chunk_size=chunk, stop=stop_flag()):
        return float(bits[idx - lo])
    raise SsvizError("the secret's chunk is empty")  # unreachable: idx < size


def shard_plan(space_size: int, chunk_size: int = SPACE_CHUNK, shard_size: int | None = None) -> tuple[int, int]:
    """``(chunk, shard)``: shards are whole chunks (a filler is scored in the same batch however the space
    is cut); by default about 64 shards, each at most 64 chunks (~4M fillers, about a minute on a core)."""
    for name, v in (("chunk size", chunk_size), ("shard size", shard_size)):
        if v is not None and (not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1):
            raise SettingsError(f"{name} must be a whole number >= 1, got {clip(repr(v), 40)}")
    chunk = int(min(chunk_size, shard_size)) if shard_size else int(chunk_size)
    if shard_size:
        shard = -(-int(shard_size) // chunk) * chunk
    else:
        shard = min(max(1, -(-space_size // (64 * chunk))), 64) * chunk
    return chunk, shard


SHARD_SCHEMA_DDL = (
    """CREATE TABLE IF NOT EXISTS runs (
        run VARCHAR PRIMARY KEY, model_sha256 VARCHAR NOT NULL, template VARCHAR NOT NULL,
        space_size BIGINT NOT NULL, shard_size BIGINT NOT NULL, chunk_size BIGINT NOT NULL,
        threshold DOUBLE NOT NULL, bin_bits DOUBLE NOT NULL, created TIMESTAMP DEFAULT current_timestamp)""",
    """CREATE TABLE IF NOT EXISTS shards (
        run VARCHAR NOT NULL, lo BIGINT NOT NULL, hi BIGINT NOT NULL, at_or_below BIGINT NOT NULL,
        first_bin BIGINT NOT NULL, counts BLOB NOT NULL, sample BLOB NOT NULL, seconds DOUBLE NOT NULL,
        PRIMARY KEY (run, lo))""",
)


class ShardStore:
    """Finished shards of exact enumerations, so a stopped run resumes (one short transaction per shard).

    A run is keyed by the model's content hash, the template, the secret's
    log-perplexity and the shard plan: the secret itself is never stored.
    """

    def __init__(self, path):
        from ssviz import db
        self.path = Path(path)
        self.schema = db.Schema("ssviz-shards", 1, SHARD_SCHEMA_DDL, "exact-enumeration shards file")
        with db.reading(self.path, self.schema):  # a foreign file is refused before any work
            pass

    def begin(self, run: str, info: dict) -> dict[int, dict]:
        """Register ``run`` and return its finished shards by first filler number."""
        from ssviz import db
        with db.writing(self.path, self.schema) as con:
            con.execute("INSERT INTO runs (run, model_sha256, template, space_size, shard_size, chunk_size, "
                        "threshold, bin_bits) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                        [run, info["model_sha256"], info["template"], info["space_size"], info["shard_size"],
                         info["chunk_size"], info["threshold"], info["bin_bits"]])
            rows = con.execute("SELECT lo, hi, at_or_below, first_bin, counts, sample, seconds FROM shards "
                               "WHERE run = ? ORDER BY lo", [run]).fetchall()
        return {int(lo): {"lo": int(lo), "hi": int(hi), "at_or_below": [int(n)], "first_bin": int(fb),
                          "counts": np.frombuffer(bytes(c), dtype="<i8").tolist(),
                          "sample": np.frombuffer(bytes(sm), dtype="<f8").tolist(), "seconds": float(sec)}
                for lo, hi, n, fb, c, sm, sec in rows}

    def save(self, run: str, shard: dict) -> None:
        from ssviz import db
        with db.writing(self.path, self.schema) as con:
            con.execute("INSERT INTO shards VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                        [run, shard["lo"], shard["hi"], shard["at_or_below"][0], shard["first_bin"],
                         np.asarray(shard["counts"], dtype="<i8").tobytes(),
                         np.asarray(shard["sample"], dtype="<f8").tobytes(), shard["seconds"]])


def _sharded_exact(model, template, secret, executor, *, limit, shard_size, chunk_size, store, progress,
                   stop) -> ExposureResult:
    from ssviz.models import checkpoint_bytes
    from ssviz.models.base import model_name

    check_exhaustive(template, limit)
    size = template.space_size
    idx = template.index_of(secret)
    chunk, shard = shard_plan(size, chunk_size, shard_size)
    try:
        data = checkpoint_bytes(model)
    except (AttributeError, TypeError):
        raise SettingsError(f"sharded enumeration needs a character model that can be saved as a checkpoint, "
                            f"not {type(model).__name__}") from None
    blob = executor.share(data)
    base = {"model": blob, "model_name": model_name(model), "template": template.text, "chunk": chunk}

    def run(fn, tasks, on_result):
        report = executor.map(fn, tasks, on_result=on_result, stop=stop, fail_fast=True)
        if report.failed:
            raise report.failed[0].exception()
        if report.stopped:
            raise StoppedError("stopped by the user" + (" (finished shards are kept: run again to resume)"
                                                         if store else ""))
        return report

    shards = ShardStore(store) if store is not None else None
    got: list[float] = []
    run(secret_task, [{**base, "index": idx, "space_size": size}], lambda i, lp: got.append(lp))
    secret_lp = got[0]

    sample = fit_indices(size)
    info = {"model_sha256": blob.digest, "template": template.text, "space_size": size, "shard_size": shard,
            "chunk_size": chunk, "threshold": secret_lp, "bin_bits": HIST_BIN_BITS}
    key = hashlib.sha256(json.dumps({**info, "threshold": secret_lp.hex(), "fit": [FIT_SAMPLE, 0]},
                                    sort_keys=True).encode()).hexdigest()
    finished = shards.begin(key, info) if shards else {}

    totals = {"at_or_below": 0, "hist": Histogram(0, np.zeros(0, dtype=np.int64)), "done": 0, "seconds": 0.0,
              "cpu_seconds": 0.0}
    picked = np.full(len(sample), np.nan)

    def add(rec: dict) -> None:
        totals["at_or_below"] += rec["at_or_below"][0]
        totals["hist"] = totals["hist"].add(Histogram(rec["first_bin"], np.asarray(rec["counts"], dtype=np.int64)))
        a, b = np.searchsorted(sample, [rec["lo"], rec["hi"]])
        picked[a:b] = rec["sample"]
        totals["done"] += rec["hi"] - rec["lo"]
        totals["seconds"] += rec["seconds"]
        totals["cpu_seconds"] += rec.get("cpu_seconds", 0.0)  # not kept for resumed shards

    for rec in finished.values():
        add(rec)
    if progress:  # the starting point (shards resumed), so a rate counts only this run's work
        progress(totals["done"], size)
    tasks = []
    for lo in range(0, size, shard):
        if lo in finished:
            continue
        hi = min(lo + shard, size)
        a, b = np.searchsorted(sample, [lo, hi])
        tasks.append({**base, "lo": lo, "hi": hi, "thresholds": [secret_lp], "sample": sample[a:b].tolist(),
                      "bin_bits": HIST_BIN_BITS})

    def on_result(i: int, rec: dict) -> None:
        if shards:
            shards.save(key, rec)  # the driver is the only writer, one shard per transaction
        add(rec)
        if progress:
            progress(totals["done"], size)

    t0 = time.perf_counter()
    run(shard_task, tasks, on_result)
    wall = time.perf_counter() - t0
    rank = totals["at_or_below"]
    fit = _fit_or_none(picked)
    scored = size - sum(r["hi"] - r["lo"] for r in finished.values())
    return ExposureResult(math.log2(size) - math.log2(rank), "exact", size, secret_lp, rank=rank, samples=size,
                          ks_pvalue=fit.ks_pvalue, skewnorm=fit.params(), histogram=totals["hist"].to_json(),
                          shards={"executor": executor.describe(), "shards": -(-size // shard), "shard_size": shard,
                                  "resumed": len(finished), "scored": scored, "seconds": wall,
                                  "fillers_per_second": scored / wall if wall > 0 else None,
                                  "task_seconds": totals["seconds"], "task_cpu_seconds": totals["cpu_seconds"]})


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
    """One entry point: ``auto`` is exact when |R| <= limit, otherwise skew-normal.

    ``executor``, ``shard_size``, ``chunk_size`` and ``store`` go to :func:`exact`: with an
    executor, exact enumeration is sharded and goes up to 10^10 fillers.
    """
    if method not in METHODS:
        raise SettingsError(f"unknown exposure method {clip(repr(method), 40)}: expected one of {', '.join(METHODS)}")
    template.check_vocab(model.vocab)
    secret = template.normalize(secret)
    if method == "auto":
        method = "exact" if template.space_size <= limit else "skewnorm"
    sharding = {k: kw.pop(k) for k in ("executor", "shard_size", "chunk_size", "store") if k in kw}
    if method == "exact":
        return exact(model, template, secret, limit=None if sharding.get("executor") else limit, **sharding, **kw)
    if method == "sampled":
        return sampled(model, template, secret, samples=samples, seed=seed, **kw)
    return skewnorm(model, template, secret, samples=samples, seed=seed, **kw)


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
        return [{"exposure": math.log2(result.space_size) - math.log2(int(r)), "rank": int(r)} for r in ranks]
    if result.method == "exact" and result.histogram:  # sharded: no scores kept, ranks within a bin
        ranks = np.maximum(Histogram.from_json(result.histogram).at_or_below(lps), 1.0)
        return [{"exposure": math.log2(result.space_size) - math.log2(float(r)), "rank": None} for r in ranks]
    if result.method == "skewnorm" and result.skewnorm:
        fit = SkewNormalFit(**result.skewnorm, ks_pvalue=result.ks_pvalue or float("nan"))
        return [{"exposure": float(e), "rank": None} for e in extrapolation(lps, refs, fit)]
    if result.method == "sampled" and refs is not None:
        return [{"exposure": float(e), "rank": None} for e in interpolation(lps, refs)]
    return [{"exposure": float("nan"), "rank": None} for _ in lps]
