"""What every extraction algorithm returns, and the budget bookkeeping they share."""

from __future__ import annotations

import os

import heapq
import math
import time
from dataclasses import dataclass, field

from ssviz.errors import SettingsError, SsvizError
from ssviz.messages import clip
from ssviz.progress import stop_requested


class SearchBudgetError(SsvizError):
    """A search ran out of its node, time or memory budget before it could answer.

    ``rank_lower_bound`` (when known) is how many fillers are certainly at least as
    likely as the secret, so ``exposure_upper_bound`` bounds the exposure from above.
    """

    def __init__(self, message: str, rank_lower_bound: int | None = None,
                 exposure_upper_bound: float | None = None):
        super().__init__(message)
        self.rank_lower_bound = rank_lower_bound
        self.exposure_upper_bound = exposure_upper_bound


@dataclass
class ExtractionResult:
    """The outcome of one extraction run.

    ``found`` is the best complete filler (bare slot characters, e.g. ``123456789``)
    or None; ``top`` the best fillers in increasing log-perplexity (bits, the full
    text as :mod:`ssviz.scoring` computes it). ``nodes_expanded`` counts partial
    fillers whose next-character distribution was used (brute force: fillers
    scored); ``model_steps`` counts characters read by the model, one sequence
    advanced by one character (the prefix included), the unit of model work.
    ``complete`` is False when a budget ran out or the run was stopped; the
    partial result is kept and ``message`` says why.
    """

    algorithm: str
    found: str | None
    log_perplexity: float | None
    top: list[dict]
    nodes_expanded: int
    model_steps: int
    seconds: float
    complete: bool = True
    message: str = ""
    trace: dict | None = field(default=None, repr=False)
    model_calls: int = 0  # batched model invocations (not in the JSON)

    def against(self, secret: str) -> dict:
        """Where ``secret`` stands in this result: its rank among the fillers found (None: not found), and
        the longest prefix any found filler shares with it (how close a search that missed came)."""
        fillers = [t["filler"] for t in self.top]
        shared = [len(os.path.commonprefix([f, secret])) for f in fillers]
        best = max(range(len(fillers)), key=shared.__getitem__) if fillers else None
        return {"secret_rank": fillers.index(secret) + 1 if secret in fillers else None,
                "shared_prefix": shared[best] if best is not None else 0,
                "closest": fillers[best] if best is not None else None}

    def to_json(self) -> dict:
        """The CLI's JSON (the trace is written separately)."""
        return {"algorithm": self.algorithm, "found": self.found, "log_perplexity": self.log_perplexity,
                "top": self.top, "nodes_expanded": self.nodes_expanded, "model_steps": self.model_steps,
                "seconds": self.seconds, "complete": self.complete, "message": self.message}


def top_list(ranked: list[tuple[float, str]], top_k: int) -> list[dict]:
    """The ``top_k`` cheapest of ``[(cost, filler)]`` (ties: filler order) as the JSON ``top`` list."""
    return [{"filler": f, "log_perplexity": float(c)} for c, f in heapq.nsmallest(top_k, ranked)]


def make_result(algorithm: str, ranked: list[tuple[float, str]], top_k: int, *, nodes: int, counter,
                started: float, complete: bool = True, message: str = "",
                trace: dict | None = None) -> ExtractionResult:
    top = top_list(ranked, top_k)
    return ExtractionResult(algorithm, top[0]["filler"] if top else None,
                            top[0]["log_perplexity"] if top else None, top, int(nodes), int(counter.reads),
                            time.perf_counter() - started, complete, message, trace, int(counter.calls))


def check_positive(name: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0 or \
            (isinstance(value, float) and not math.isfinite(value)):
        raise SettingsError(f"{name} must be a positive number, got {clip(repr(value), 40)}")


class Deadline:
    """Node/time budgets and the stop flag, checked once per iteration."""

    def __init__(self, max_seconds: float | None, stop):
        check_positive("max_seconds", max_seconds, allow_none=True)
        self.started = time.perf_counter()
        self.max_seconds = max_seconds
        self.stop = stop

    def stopped(self) -> bool:
        return stop_requested(self.stop)

    def out_of_time(self) -> bool:
        return self.max_seconds is not None and time.perf_counter() - self.started > self.max_seconds

    def why_not_continue(self) -> str | None:
        """A message when the run must end now (stopped or out of time), else None."""
        if self.stopped():
            return "stopped by the user"
        if self.out_of_time():
            return f"time budget of {self.max_seconds:g} s reached"
        return None
