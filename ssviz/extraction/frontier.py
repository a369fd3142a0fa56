"""What every best-first search shares, over characters or over tokens: the frontier and its drivers' loop.

:mod:`~ssviz.extraction.shortest_path` (characters) and
:mod:`~ssviz.extraction.token_search` (transformer tokens) both subclass
:class:`Frontier`; the drivers (:func:`~ssviz.extraction.shortest_path.shortest_path`,
:func:`~ssviz.extraction.rank.search_exposure`) only see this interface.
"""

from __future__ import annotations

from ssviz.extraction.result import Deadline, check_positive
from ssviz.extraction.states import PoolFullError

DEFAULT_MAX_MEMORY_MB = 512
# approximate CPython sizes: a frontier entry (tuple, float, int, list slot), a finished (tuple, float, str)
FRONTIER_ENTRY_BYTES = 128
FINISHED_ENTRY_BYTES = 144


class Frontier:
    """What drivers (:func:`shortest_path`, :func:`~ssviz.extraction.rank.search_exposure`) see of a best-first search.

    ``heap`` holds the frontier (cost first), ``finished`` the complete fillers as
    ``(log-perplexity, filler)`` in the order found; subclasses define
    ``iterate`` and ``memory_bytes``.
    """

    heap: list
    finished: list[tuple[float, str]]
    nodes_expanded: int
    iterations: int
    max_bytes: int

    @property
    def frontier_min(self) -> float:
        return self.heap[0][0] if self.heap else float("inf")

    def ranked(self, top_k: int) -> list[tuple[float, str]]:
        """The finished fillers a result reports (at least its ``top_k`` best), as ``(cost, filler)``."""
        return self.finished

    def drive(self, done, *, max_nodes: int, deadline: Deadline, progress=None) -> str | None:
        """Iterate until ``done()`` or the frontier is empty (None), or a budget ends the run (its message)."""
        check_positive("max_nodes", max_nodes)
        while not done() and self.heap:
            why = deadline.why_not_continue()
            if why is None and self.nodes_expanded >= max_nodes:
                why = f"node budget of {max_nodes:,} expanded nodes reached"
            if why is None and self.memory_bytes > self.max_bytes:
                why = f"memory budget of {self.max_bytes / 2**20:g} MB reached"
            if why is not None:
                return why
            try:
                self.iterate(max_pop=max_nodes - self.nodes_expanded)
            except PoolFullError as e:
                return str(e)
            if progress is not None and self.iterations % 16 == 0:
                progress(self.nodes_expanded, max_nodes)
        return None
