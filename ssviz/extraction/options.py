"""How a search runs, as one object: budgets, algorithm settings, tracing and the caller's hooks.

Every algorithm reads the fields it uses from one :class:`SearchOptions` (as
Hugging Face's ``GenerationConfig`` serves every decoding strategy), so a budget
or trace option is defined, defaulted and checked once. Callers keep passing
keywords (``shortest_path(model, template, top_k=5, max_nodes=10_000)``); each
algorithm turns them into options with :meth:`SearchOptions.from_kwargs` and
also takes a ready object (``options=SearchOptions(...)``), keywords winning.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

from ssviz.errors import SettingsError
from ssviz.extraction.result import check_positive
from ssviz.extraction.trace import DEFAULT_MAX_CHILDREN, DEFAULT_MAX_STEPS
from ssviz.scoring import EXHAUSTIVE_LIMIT

DEFAULT_MAX_MEMORY_MB = 512
STOP_RULES = ("exact", "paper")
# settings that must be positive numbers when an algorithm uses them (None allowed only for max_seconds)
POSITIVE = ("max_nodes", "batch_size", "max_memory_mb", "beam_width", "samples", "chunk_size", "limit")

# what each algorithm reads, and its own defaults for the settings whose default depends on the algorithm
TRACE = ("trace", "max_trace_steps", "max_trace_children")
HOOKS = ("max_seconds", "progress", "stop")
ACCEPTED = {
    "shortest_path": ("max_nodes", "batch_size", "stop_rule", "max_memory_mb", *TRACE, *HOOKS),
    "beam_search": ("beam_width", *TRACE, *HOOKS),
    "sample": ("samples", "seed", "chunk_size", *TRACE, *HOOKS),
    "brute_force": ("limit", "chunk_size", *TRACE, *HOOKS),
    "search_exposure": ("max_nodes", "batch_size", "max_memory_mb", *HOOKS),
}
DEFAULTS = {
    "shortest_path": {"max_nodes": 100_000},
    "search_exposure": {"max_nodes": 200_000},
    "sample": {"chunk_size": 4096},
    "brute_force": {"chunk_size": 1 << 15},
}


@dataclass(frozen=True)
class SearchOptions:
    """Budgets, settings and hooks of one search; a field left None takes the algorithm's own default."""

    # budgets: a run that reaches one ends with a partial result (complete=False) and says which
    max_nodes: int | None = None       # best-first: nodes expanded (shortest_path 100,000; search_exposure 200,000)
    max_seconds: float | None = None   # wall time
    max_memory_mb: float = DEFAULT_MAX_MEMORY_MB  # best-first: state rows, frontier and results
    # algorithm settings
    batch_size: int = 64               # best-first: nodes popped per model call
    stop_rule: str = "exact"           # best-first: "exact" (certified) or "paper" (2x the first hit's iterations)
    beam_width: int = 1000             # beam: partial fillers kept
    samples: int = 10_000              # sampling: fillers drawn
    seed: int = 0                      # sampling: random seed
    chunk_size: int | None = None      # sampling: draws per batch (4,096); brute force: fillers per chunk (32,768)
    limit: int = EXHAUSTIVE_LIMIT      # brute force: the largest space enumerated
    # trace (docs/trace.md)
    trace: bool = False
    max_trace_steps: int = DEFAULT_MAX_STEPS
    max_trace_children: int = DEFAULT_MAX_CHILDREN
    # the caller's hooks
    progress: Callable[[int, int], None] | None = None
    stop: Callable[[], bool] | None = None

    @classmethod
    def from_kwargs(cls, algorithm: str, kwargs: dict, options: SearchOptions | None = None) -> SearchOptions:
        """``options`` (or the defaults) with ``kwargs`` applied, checked for what ``algorithm`` reads.

        A keyword the algorithm does not read is a caller's mistake: TypeError, as for
        any unexpected keyword argument. Algorithm-specific defaults fill fields left None.
        """
        if options is not None and not isinstance(options, SearchOptions):
            raise TypeError(f"{algorithm}() options must be SearchOptions, got {type(options).__name__}")
        accepted = ACCEPTED[algorithm]
        for name in kwargs:
            if name not in accepted:
                raise TypeError(f"{algorithm}() got an unexpected keyword argument {name!r}")
        opts = dataclasses.replace(options or cls(), **kwargs)
        fill = {k: v for k, v in DEFAULTS.get(algorithm, {}).items() if getattr(opts, k) is None}
        if fill:
            opts = dataclasses.replace(opts, **fill)
        opts.check(accepted)
        return opts

    def check(self, names) -> None:
        """SettingsError for a setting among ``names`` that cannot be used."""
        for name in POSITIVE:
            if name in names:
                check_positive(name, getattr(self, name))
        if "max_seconds" in names:
            check_positive("max_seconds", self.max_seconds, allow_none=True)
        if "stop_rule" in names and self.stop_rule not in STOP_RULES:
            raise SettingsError(f"unknown stop rule {self.stop_rule!r}: expected one of {', '.join(STOP_RULES)}")

    @property
    def max_bytes(self) -> int:
        """The best-first memory budget in bytes."""
        return int(self.max_memory_mb * 2**20)
