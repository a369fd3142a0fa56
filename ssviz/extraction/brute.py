"""Brute force (the paper's section 5.1): score every filler with the trie scorer, keep the best.

A transformer's fillers are scored by the token trie scorer (:mod:`ssviz.token_scoring`): canonical tokens.

The space is walked in lexicographic chunks (memory bounded by the chunk, not
by |R|) and only the running top-k is kept. Spaces beyond ``limit`` are refused
up front with an estimate of the time, from this model's measured throughput.
"""

from __future__ import annotations

import time

import numpy as np

from ssviz.errors import SpaceTooLargeError
from ssviz.extraction.result import ExtractionResult, make_result
from ssviz.extraction.space import start_run
from ssviz.extraction.trace import (
    DEFAULT_MAX_CHILDREN,
    DEFAULT_MAX_STEPS,
    found_entry,
    recorder_for,
)
from ssviz.models.base import LanguageModel
from ssviz.scoring import (
    DEFAULT_CHUNK,
    EXHAUSTIVE_LIMIT,
    check_exhaustive,
    iter_space_chunks,
)

RATE_PROBE = 1 << 13


def measure_rate(model: LanguageModel, space, n: int = RATE_PROBE) -> float:
    """Fillers scored per second by the trie scorer on this model (first ``n`` fillers)."""
    n = min(n, space.template.space_size)
    digits = space.template.digits_of_indices(np.arange(n, dtype=np.int64))
    t0 = time.perf_counter()
    space.score(model, digits)
    return n / max(time.perf_counter() - t0, 1e-9)


def brute_force(model: LanguageModel, template, *, top_k: int = 1, limit: int = EXHAUSTIVE_LIMIT,
                chunk_size: int = DEFAULT_CHUNK, max_seconds: float | None = None, trace: bool = False,
                max_trace_steps: int = DEFAULT_MAX_STEPS, max_trace_children: int = DEFAULT_MAX_CHILDREN,
                progress=None, stop=None) -> ExtractionResult:
    """The exact ``top_k`` by enumeration; :class:`SpaceTooLargeError` when |R| > ``limit``."""
    deadline, counter, space = start_run(model, template, max_seconds, stop, top_k=top_k, limit=limit,
                                         chunk_size=chunk_size)
    total = space.template.space_size
    if total > limit:
        check_exhaustive(space.template, limit, rate=measure_rate(model, space))
    recorder = recorder_for(trace, "brute", space, max_trace_steps, max_trace_children)
    k = int(min(top_k, total))
    best_lp = np.empty(0)
    best_idx = np.empty(0, dtype=np.int64)
    scored, why = 0, None
    for lo, digits in iter_space_chunks(space.template, chunk_size):
        why = deadline.why_not_continue()
        if why is not None:
            break
        lps = space.score(counter, digits)
        lp_all = np.concatenate([best_lp, lps])
        idx_all = np.concatenate([best_idx, np.arange(lo, lo + len(lps), dtype=np.int64)])
        keep = np.lexsort((idx_all, lp_all))[:k]  # ties: lower filler number first
        best_lp, best_idx = lp_all[keep], idx_all[keep]
        scored += len(lps)
        if recorder is not None:
            order = np.argsort(lps, kind="stable")[:recorder.max_children]
            recorder.step([], [], total - scored,
                          [found_entry(space.template.filler_at(lo + int(i)), lps[i]) for i in order])
        if progress is not None:
            progress(scored, total)
    ranked = [(float(c), space.template.filler_at(int(i))) for c, i in zip(best_lp, best_idx)]
    result = make_result("brute", ranked, k, nodes=scored, counter=counter, started=deadline.started,
                         complete=why is None, message=f"{why} after {scored:,} of {total:,} fillers" if why else "")
    if recorder is not None:
        result.trace = recorder.finish(result)
    return result


__all__ = ["SpaceTooLargeError", "brute_force", "measure_rate"]
