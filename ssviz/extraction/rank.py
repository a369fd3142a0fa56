"""Exact rank and exposure by best-first enumeration (``--method search``).

Shortest-path search emits complete fillers in increasing log-perplexity, so
the secret's exact rank is known once every frontier node costs more than the
secret: all fillers at least as likely have then been generated. This measures
exact exposure in spaces far too large to enumerate, as long as the secret is
memorized well enough to come out within the node budget (the paper's
Appendix E check).

Rank follows :func:`ssviz.exposure.exact`: the number of fillers with
log-perplexity <= the secret's, itself included (ties count against it).
When the budget runs out first, :class:`SearchBudgetError` is raised (no
number is returned that could be mistaken for exact exposure); it carries the
rank lower bound found so far and the exposure upper bound it implies.

Each filler counts once, at its canonical log-perplexity: exact on the
one-path-per-filler lattice (character models, digit-splitting tokenizers),
certified under a sampled check of the root for merging tokenizers
(:mod:`ssviz.extraction.lattice`).
"""

from __future__ import annotations

import math

import numpy as np

from ssviz.errors import StoppedError
from ssviz.exposure.result import ExposureResult
from ssviz.extraction.options import SearchOptions
from ssviz.extraction.result import Deadline, SearchBudgetError
from ssviz.extraction.shortest_path import BestFirstSearch
from ssviz.models.base import LanguageModel
from ssviz.scoring import score_fillers
from ssviz.templates import as_template


def search_exposure(model: LanguageModel, template, secret: str, *, options: SearchOptions | None = None,
                    **kwargs) -> ExposureResult:
    """Exact rank of ``secret`` among all fillers, by enumerating fillers from the most likely.

    Options (keywords or ``options``): ``max_nodes`` (200,000), ``batch_size``,
    ``max_seconds``, ``max_memory_mb``, ``progress``, ``stop``. Raises
    :class:`SearchBudgetError` if the rank is not certain within the budgets,
    :class:`~ssviz.errors.StoppedError` when stopped.
    """
    opts = SearchOptions.from_kwargs("search_exposure", kwargs, options)
    template = as_template(template)
    template.check_vocab(model.vocab)
    secret = template.normalize(secret)
    deadline = Deadline(opts.max_seconds, opts.stop)
    search = BestFirstSearch(model, template, opts)
    secret_cost = None
    seen = 0

    def done() -> bool:
        nonlocal secret_cost, seen
        if secret_cost is None:
            for c, f in search.finished[seen:]:
                if f == secret:
                    secret_cost = c
                    break
            seen = len(search.finished)
        return secret_cost is not None and search.frontier_min > secret_cost

    target = float(score_fillers(model, template, [secret])[0]) if opts.progress is not None else None

    def describe() -> str:
        """The frontier's cost against the secret's: the search is certain once it has passed it."""
        return (f"{search.nodes_expanded:,} nodes expanded, {len(search.finished):,} filler(s) complete; frontier "
                f"at {search.frontier_min:.2f} bits of the secret's {target:.2f}")

    why = search.drive(done, max_nodes=opts.max_nodes, deadline=deadline, progress=opts.progress,
                       describe=describe if target is not None else None)
    costs = np.fromiter((c for c, _ in search.finished), dtype=np.float64, count=len(search.finished))
    if why is not None:
        if deadline.stopped():
            raise StoppedError(why)
        bound = secret_cost if secret_cost is not None else search.frontier_min
        lower = int(np.count_nonzero(costs <= bound)) + (0 if secret_cost is not None else 1)
        upper_exposure = math.log2(template.space_size) - math.log2(lower)
        where = ("the secret was generated but not yet certified" if secret_cost is not None
                 else "the secret was not reached")
        raise SearchBudgetError(
            f"search exposure needs a larger budget: {why}, and {where}; at least {lower:,} fillers are "
            f"at least as likely, so exposure <= {upper_exposure:.2f} bits. Raise --max-nodes or use "
            f"--method skewnorm", rank_lower_bound=lower, exposure_upper_bound=upper_exposure)
    rank = int(np.count_nonzero(costs <= secret_cost))
    return ExposureResult(math.log2(template.space_size) - math.log2(rank), "search", template.space_size,
                          float(secret_cost), rank=rank, samples=len(costs))
