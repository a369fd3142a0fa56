"""Secret extraction (the paper's section 5): find the fillers a model finds most likely.

``brute_force`` enumerates, ``sample`` draws from the model, ``beam_search``
keeps the N best prefixes (and can miss the secret), ``shortest_path`` is an
exact batched Dijkstra search; ``search_exposure`` turns its best-first
enumeration into an exact rank. All return an :class:`ExtractionResult`
(``search_exposure`` an :class:`~ssviz.exposure.ExposureResult`).

Every algorithm has one implementation, for every model: it walks the
:class:`~.lattice.Lattice` of unit paths that spell the template's texts
(characters, or a transformer's tokens; :mod:`.lattice` says when that is
exact), and reports fillers at their canonical log-perplexity. Budgets, settings
and trace options are one :class:`~.options.SearchOptions`, passed as keywords
or as ``options=``.
"""

from __future__ import annotations

from ssviz.errors import SettingsError
from ssviz.extraction.beam import beam_search
from ssviz.extraction.brute import brute_force
from ssviz.extraction.options import SearchOptions
from ssviz.extraction.rank import search_exposure
from ssviz.extraction.result import ExtractionResult, SearchBudgetError
from ssviz.extraction.sampling import sample
from ssviz.extraction.shortest_path import shortest_path
from ssviz.extraction.trace import load_trace, save_trace, validate_trace

ALGORITHMS = {"dijkstra": shortest_path, "beam": beam_search, "sampling": sample, "brute": brute_force}


SEARCH_THREADS = 1  # a search steps small batches, which a second torch thread only slows down


def extract(model, template, algorithm: str = "dijkstra", *, threads: int = SEARCH_THREADS,
            **options) -> ExtractionResult:
    """Run one extraction algorithm by name (``top_k``, and options as keywords or ``options=SearchOptions``)
    on ``threads`` torch threads (the caller's setting is restored afterwards)."""
    import torch
    try:
        run = ALGORITHMS[algorithm]
    except KeyError:
        raise SettingsError(f"unknown extraction algorithm {algorithm!r}: expected one of "
                         f"{', '.join(ALGORITHMS)}") from None
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return run(model, template, **options)
    finally:
        torch.set_num_threads(before)


__all__ = ["ALGORITHMS", "ExtractionResult", "SearchBudgetError", "SearchOptions", "beam_search", "brute_force",
           "extract", "load_trace", "sample", "save_trace", "search_exposure", "shortest_path", "validate_trace"]
