"""Brute force (the paper's section 5.1): score every filler with the trie scorer, keep the best.

Fillers are scored by the lattice's trie scorer (:mod:`ssviz.scoring`): their
canonical units, whatever the model. The space is walked in consecutive chunks
of filler numbers (memory bounded by the chunk, not by |R|) and only the running
top-k is kept. Spaces beyond ``limit`` are refused up front with an estimate of
the time, from this model's measured throughput.
"""

from __future__ import annotations

import numpy as np
import torch

from ssviz.errors import SpaceTooLargeError
from ssviz.extraction.counting import CountingModel
from ssviz.extraction.lattice import Lattice
from ssviz.extraction.options import SearchOptions
from ssviz.extraction.result import Deadline, ExtractionResult, check_positive, make_result
from ssviz.extraction.trace import found_entry, recorder_for
from ssviz.models.base import LanguageModel
from ssviz.scoring import check_exhaustive

def brute_force(model: LanguageModel, template, *, top_k: int = 1, options: SearchOptions | None = None,
                **kwargs) -> ExtractionResult:
    """The exact ``top_k`` by enumeration; :class:`SpaceTooLargeError` when |R| > ``limit``.

    Options (keywords or ``options``): ``limit``, ``chunk_size`` (32,768 fillers),
    ``max_seconds``, ``trace``, ``max_trace_steps``, ``max_trace_children``,
    ``progress``, ``stop``.
    """
    check_positive("top_k", top_k)
    opts = SearchOptions.from_kwargs("brute_force", kwargs, options)
    deadline = Deadline(opts.max_seconds, opts.stop)
    counter = CountingModel(model)
    lat = Lattice(counter, template, check=False)  # canonical units only: no path to follow
    template = lat.template
    total = template.space_size
    if total > opts.limit:
        check_exhaustive(template, opts.limit, rate=lat.scorer.rate())
    recorder = recorder_for(opts, "brute", lat)
    k = int(min(top_k, total))
    chunk = int(opts.chunk_size)
    best_lp = np.empty(0)
    best_idx = np.empty(0, dtype=np.int64)
    scored, why = 0, None
    for lo in range(0, total, chunk):
        why = deadline.why_not_continue()
        if why is not None:
            break
        with torch.inference_mode():
            lps = lat.scorer.score_range(lo, min(lo + chunk, total))
        lp_all = np.concatenate([best_lp, lps])
        idx_all = np.concatenate([best_idx, np.arange(lo, lo + len(lps), dtype=np.int64)])
        keep = np.lexsort((idx_all, lp_all))[:k]  # ties: lower filler number first
        best_lp, best_idx = lp_all[keep], idx_all[keep]
        scored += len(lps)
        if recorder is not None:
            order = np.argsort(lps, kind="stable")[:recorder.max_children]
            recorder.step([], [], total - scored,
                          [found_entry(template.filler_at(lo + int(i)), lps[i]) for i in order])
        if opts.progress is not None:
            opts.progress(scored, total)
    ranked = [(float(c), template.filler_at(int(i))) for c, i in zip(best_lp, best_idx)]
    result = make_result("brute", ranked, k, nodes=scored, counter=counter, started=deadline.started,
                         complete=why is None, message=f"{why} after {scored:,} of {total:,} fillers" if why else "")
    if recorder is not None:
        result.trace = recorder.finish(result)
    return result


__all__ = ["SpaceTooLargeError", "brute_force"]
