"""Exact enumeration in shards: spaces up to 10^10 fillers, no score held anywhere, resumable.

The space is cut into shards of whole chunks; each shard is an executor task
that returns only what adds up across shards (counts at or below the secret's
log-perplexity, a fixed-bin histogram, the scores of the fit's subsample).
Without an executor the same tasks run in this process
(:class:`~ssviz.executor.InlineExecutor`), so there is one way to run them.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from ssviz.errors import SettingsError, SsvizError, StoppedError
from ssviz.messages import clip
from ssviz.exposure.estimators import (FIT_SAMPLE, HIST_BIN_BITS, Histogram, exposure_at_rank, fit_indices,
                                       fit_or_none)
from ssviz.exposure.result import ExposureResult
from ssviz.models.base import LanguageModel
from ssviz.progress import Progress, StopFlag
from ssviz.scoring import SPACE_CHUNK, check_exhaustive, score_range
from ssviz.templates import Template

SHARDED_LIMIT = 10 ** 10  # exact enumeration in shards: ~5 CPU-hours for the 2x200 demo (~550k fillers/s a core)


def count_range(model: LanguageModel, template: Template, lo: int, hi: int, thresholds, *, sample=(),
                chunk_size: int = SPACE_CHUNK, bin_bits: float = HIST_BIN_BITS, stop: StopFlag | None = None,
                progress: Progress | None = None) -> dict:
    """Score fillers ``lo..hi-1`` and keep only what adds up across shards.

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


# --- executor tasks: plain data in, plain data out -----------------------------------------------
def _worker_model(task: dict) -> LanguageModel:
    from ssviz.executor import shared_model
    return shared_model(task["model"], task["model_name"], task.get("dtype", "auto"))


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


# --- the plan and the store of finished shards ----------------------------------------------------
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
        picks = fit_indices(int(info["space_size"])) if rows else None
        return {int(row[0]): self._checked(row, info, picks) for row in rows}

    def _checked(self, row, info: dict, picks: np.ndarray) -> dict:
        """One stored shard as the runner adds it, every field checked against the run's plan.

        A shard edited or damaged by hand (a count below zero or beyond its fillers, a histogram
        that does not add up, a NaN score) would otherwise change the exact rank silently.
        """
        from ssviz.errors import InvalidValueError
        lo, hi, n, fb, c, sm, sec = row
        size, shard = int(info["space_size"]), int(info["shard_size"])

        def bad(field: str, why: str):
            return InvalidValueError(f"{self.path}: shard at {lo!r}: {field} {why} (the file was edited or damaged; "
                                     "delete it to score every shard again)")
        if not (isinstance(lo, int) and isinstance(hi, int) and 0 <= lo < size and lo % shard == 0
                and hi == min(lo + shard, size)):
            raise bad("lo/hi", f"are {lo!r}..{hi!r}, not a shard of the plan")
        if not isinstance(n, int) or not 0 <= n <= hi - lo:
            raise bad("at_or_below", f"is {n!r}, not a count of the shard's {hi - lo:,} fillers")
        c, sm = bytes(c or b""), bytes(sm or b"")
        if len(c) % 8 or len(sm) % 8:
            raise bad("counts/sample", "are not whole arrays of 8-byte numbers")
        counts = np.frombuffer(c, dtype="<i8")
        if (counts < 0).any() or int(counts.sum()) != hi - lo:
            raise bad("counts", f"do not add up to the shard's {hi - lo:,} fillers")
        sample = np.frombuffer(sm, dtype="<f8")
        a, b = np.searchsorted(picks, [lo, hi])
        if len(sample) != b - a or not np.isfinite(sample).all():
            raise bad("sample", f"holds {len(sample)} scores (NaN or infinite ones included), not {b - a} finite ones")
        if not isinstance(sec, (int, float)) or not np.isfinite(sec) or sec < 0:
            raise bad("seconds", f"is {sec!r}")
        if not isinstance(fb, int):
            raise bad("first_bin", f"is {fb!r}")
        return {"lo": lo, "hi": hi, "at_or_below": [n], "first_bin": fb, "counts": counts.tolist(),
                "sample": sample.tolist(), "seconds": float(sec)}

    def save(self, run: str, shard: dict) -> None:
        from ssviz import db
        with db.writing(self.path, self.schema) as con:
            con.execute("INSERT INTO shards VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                        [run, shard["lo"], shard["hi"], shard["at_or_below"][0], shard["first_bin"],
                         np.asarray(shard["counts"], dtype="<i8").tobytes(),
                         np.asarray(shard["sample"], dtype="<f8").tobytes(), shard["seconds"]])


# --- the runner -----------------------------------------------------------------------------------
def sharded_exact(model: LanguageModel, template: Template, secret: str, executor=None, *,
                  limit: int = SHARDED_LIMIT, shard_size: int | None = None, chunk_size: int = SPACE_CHUNK,
                  store=None, progress: Progress | None = None, stop: StopFlag | None = None) -> ExposureResult:
    """Exact exposure of ``secret`` (already normalized) by shards mapped over ``executor``
    (this process when None); ``store`` (a path) keeps finished shards, so a stopped run resumes."""
    from ssviz.executor import InlineExecutor
    if executor is None:
        with InlineExecutor() as inline:
            return sharded_exact(model, template, secret, inline, limit=limit, shard_size=shard_size,
                                 chunk_size=chunk_size, store=store, progress=progress, stop=stop)
    from ssviz.models.base import model_name

    check_exhaustive(template, limit)
    shards = ShardStore(store) if store is not None else None  # a foreign, odd or corrupt file: before any work
    size = template.space_size
    idx = template.index_of(secret)
    chunk, shard = shard_plan(size, chunk_size, shard_size)
    blob = executor.share_model(model)
    from ssviz.models.placement import dtype_name
    base = {"model": blob, "model_name": model_name(model), "template": template.text, "chunk": chunk,
            "dtype": dtype_name(model.dtype)}

    def run(fn, tasks, on_result):
        report = executor.map(fn, tasks, on_result=on_result, stop=stop, fail_fast=True)
        if report.failed:
            raise report.failed[0].exception()
        if report.stopped:
            raise StoppedError("stopped by the user" + (" (finished shards are kept: run again to resume)"
                                                         if store else ""))
        return report

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
    fit = fit_or_none(picked)
    scored = size - sum(r["hi"] - r["lo"] for r in finished.values())
    return ExposureResult(exposure_at_rank(size, rank), "exact", size, secret_lp, rank=rank, samples=size,
                          ks_pvalue=fit.ks_pvalue, skewnorm=fit.params(), histogram=totals["hist"].to_json(),
                          shards={"executor": executor.describe(), "shards": -(-size // shard), "shard_size": shard,
                                  "resumed": len(finished), "scored": scored, "seconds": wall,
                                  "fillers_per_second": scored / wall if wall > 0 else None,
                                  "task_seconds": totals["seconds"], "task_cpu_seconds": totals["cpu_seconds"]})
