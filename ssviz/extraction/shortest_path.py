"""Shortest-path (Dijkstra) search over the tree of partial fillers (the paper's section 5.4).

Edge weight = -log2 P(char | text so far) >= 0, so a node's cost (the root's is
the prefix's log-perplexity) never decreases along a path and complete fillers
come out in increasing log-perplexity: the first one certified is the
most likely filler, and continuing enumerates the next ones in order.

Batched pops. Each iteration pops up to ``batch_size`` cheapest frontier nodes
and steps them in one model call (the paper's speed-up). That breaks "the first
complete filler popped is the best", which the paper restores by running as
many iterations again. We use the exact criterion instead (``stop_rule="exact"``):
a complete filler of cost c is certified once every frontier node costs >= c,
since all other fillers descend from frontier nodes. The top-k are final once
the k-th best found is certified. ``stop_rule="paper"`` applies the paper's
heuristic (stop after 2x the iterations of the first complete filler).

Lazy children. A popped node reads its last slot character (and the literals
forced after it) only when popped; its children enter the frontier as (parent
row, character) with cost = parent cost + edge, the state of the parent kept in
a :class:`~ssviz.extraction.states.StatePool`. One model read per expanded
node; literal costs are added when the child is popped, which keeps the order
exact (costs only grow). Complete fillers with no trailing literal are finished
as soon as they are created.

Memory: ``max_memory_mb`` bounds the state rows plus the frontier and finished
entries (about 128 bytes per frontier entry); reaching it ends the run with a
partial result, like the node and time budgets.

Ties: nodes of equal cost pop in (parent row, character) order, so the outcome
is deterministic; fillers whose costs are exactly equal may appear in either
order relative to brute force.
"""

from __future__ import annotations

import heapq

import numpy as np
import torch

from ssviz.errors import SettingsError
from ssviz.extraction.frontier import (  # noqa: F401 (re-exported: the search's budgets)
    DEFAULT_MAX_MEMORY_MB,
    FINISHED_ENTRY_BYTES,
    FRONTIER_ENTRY_BYTES,
    Frontier,
)
from ssviz.extraction.result import (
    Deadline,
    ExtractionResult,
    check_positive,
    make_result,
)
from ssviz.extraction.space import CountingModel, SearchSpace, is_token_model
from ssviz.extraction.states import StatePool
from ssviz.extraction.trace import (
    DEFAULT_MAX_CHILDREN,
    DEFAULT_MAX_STEPS,
    child,
    found_entry,
    node,
    recorder_for,
)
from ssviz.memory import ensure_memory
from ssviz.models.base import LanguageModel

STOP_RULES = ("exact", "paper")


def best_first(model: LanguageModel, template, **options) -> Frontier:
    """The best-first search for this model: over characters, or over token paths for a transformer."""
    if is_token_model(model):
        from ssviz.extraction.token_search import TokenBestFirstSearch
        return TokenBestFirstSearch(model, template, **options)
    return BestFirstSearch(model, template, **options)


class BestFirstSearch(Frontier):
    """The frontier, the finished fillers and one batched iteration over characters; drivers decide when to stop."""

    def __init__(self, model: LanguageModel, template, *, batch_size: int = 64,
                 max_memory_mb: float = DEFAULT_MAX_MEMORY_MB, trace: bool = False,
                 max_trace_steps: int = DEFAULT_MAX_STEPS, max_trace_children: int = DEFAULT_MAX_CHILDREN):
        check_positive("batch_size", batch_size)
        self.model = CountingModel(model)
        self.space = SearchSpace.build(self.model, template)
        self.batch_size = int(batch_size)
        check_positive("max_memory_mb", max_memory_mb)
        self.max_bytes = int(max_memory_mb * 2**20)
        ensure_memory(self.max_bytes, f"a search memory budget of {max_memory_mb:,} MB", "give a smaller budget")
        self.pool = StatePool(self.model, self.max_bytes)
        self.recorder = recorder = recorder_for(trace, "dijkstra", self.space, max_trace_steps, max_trace_children)
        self.heap: list[tuple[float, int, int]] = []      # (cost, parent row, character offset)
        self.finished: list[tuple[float, str]] = []       # complete fillers in the order found
        self.row_filler: list[str] = []                   # the partial filler of each pool row
        self.row_depth: list[int] = []
        self.nodes_expanded = 0
        self.iterations = 0
        F = self.space.depth
        width = max(len(a) for a in self.space.alphabets)
        self.char_tokens = np.zeros((F, width), dtype=np.int64)
        for k, toks in enumerate(self.space.slot_tokens):
            self.char_tokens[k, :len(toks)] = toks
        with torch.inference_mode():
            rows = self.pool.append(self.space.ctx.state)
            self.row_filler.append("")
            self.row_depth.append(0)
            children = self._add_children(rows, torch.tensor([self.space.prefix_bits], dtype=torch.float64),
                                          0, self.space.ctx.log_probs)
        if recorder is not None:
            recorder.step([node("", self.space.prefix_bits)], children, len(self.heap),
                          [found_entry(f, c) for c, f in self.finished])

    @property
    def memory_bytes(self) -> int:
        """State rows plus frontier and finished entries (estimated)."""
        return (self.pool.bytes_used + FRONTIER_ENTRY_BYTES * len(self.heap)
                + FINISHED_ENTRY_BYTES * len(self.finished))

    def _add_children(self, rows: torch.Tensor, costs: torch.Tensor, depth: int,
                      log_probs: torch.Tensor) -> list[dict]:
        """Children of nodes at ``depth`` (their pool ``rows``): frontier entries, or finished fillers."""
        space = self.space
        edges = space.edge_bits(log_probs, depth)
        child_costs = (costs[:, None] + edges).tolist()
        alphabet = space.alphabets[depth]
        rows_l = rows.tolist()
        leaf_now = depth + 1 == space.depth and not space.literals_after[depth]
        if leaf_now:
            for r, cs in zip(rows_l, child_costs):
                base = self.row_filler[r]
                self.finished.extend((c, base + a) for c, a in zip(cs, alphabet))
        else:
            push, heap = heapq.heappush, self.heap
            for r, cs in zip(rows_l, child_costs):
                for a, c in enumerate(cs):
                    push(heap, (c, r, a))
        if self.recorder is None or self.recorder.full:
            return []
        edges_l = edges.tolist()
        out = []
        for r, cs, es in zip(rows_l, child_costs, edges_l):
            base = self.row_filler[r]
            out.extend(child(base + a, e, c) for a, e, c in zip(alphabet, es, cs))
        out.sort(key=lambda d: d["cost"])
        return out

    def iterate(self, max_pop: int | None = None) -> None:
        """Pop up to ``batch_size`` cheapest nodes and expand them in one batched model step."""
        n = min(self.batch_size, len(self.heap), max_pop if max_pop is not None else len(self.heap))
        if n <= 0:
            return
        pop, heap = heapq.heappop, self.heap
        popped = [pop(heap) for _ in range(n)]
        costs = torch.tensor([p[0] for p in popped], dtype=torch.float64)
        prow = torch.tensor([p[1] for p in popped], dtype=torch.long)
        chars = np.fromiter((p[2] for p in popped), dtype=np.int64, count=n)
        depth = np.fromiter((self.row_depth[p[1]] for p in popped), dtype=np.int64, count=n) + 1
        fillers = [self.row_filler[p[1]] + self.space.alphabets[d - 1][c] for p, d, c in zip(popped, depth, chars)]
        n_found = len(self.finished)
        recording = self.recorder is not None and not self.recorder.full
        expanded, children = [], []
        with torch.inference_mode():
            log_probs, state = self.model.step(torch.from_numpy(self.char_tokens[depth - 1, chars]),
                                               self.pool.gather(prow))
            groups = np.unique(depth)
            for d in groups.tolist():
                idx = np.flatnonzero(depth == d)
                if len(groups) == 1:
                    g_lp, g_state, g_cost = log_probs, state, costs
                else:
                    ti = torch.from_numpy(idx)
                    g_lp, g_state, g_cost = log_probs[ti], self.model.select_state(state, ti), costs[ti]
                leaf = d == self.space.depth
                g_cost, g_lp, g_state = self.space.force_literals(self.model, d - 1, g_cost, g_lp, g_state,
                                                                  need_state=not leaf)
                g_fill = [fillers[i] for i in idx.tolist()]
                if leaf:
                    self.finished.extend(zip(g_cost.tolist(), g_fill))
                else:
                    rows = self.pool.append(g_state)
                    self.row_filler.extend(g_fill)
                    self.row_depth.extend([d] * len(idx))
                    kids = self._add_children(rows, g_cost, d, g_lp)
                    if recording:
                        children.extend(kids)
                if recording:
                    expanded.extend(node(f, c) for f, c in zip(g_fill, g_cost.tolist()))
        self.nodes_expanded += n
        self.iterations += 1
        if self.recorder is not None:  # past its step cap, the recorder only marks the trace as capped
            self.recorder.search_step(expanded, children, len(self.heap), self.finished[n_found:] if recording else [])


def shortest_path(model: LanguageModel, template, *, top_k: int = 1, max_nodes: int = 100_000,
                  batch_size: int = 64, max_seconds: float | None = None, stop_rule: str = "exact",
                  max_memory_mb: float = DEFAULT_MAX_MEMORY_MB, trace: bool = False,
                  max_trace_steps: int = DEFAULT_MAX_STEPS, max_trace_children: int = DEFAULT_MAX_CHILDREN,
                  progress=None, stop=None) -> ExtractionResult:
    """The ``top_k`` most likely fillers, exactly (``stop_rule="exact"``), by batched Dijkstra search.

    When a budget runs out (or ``stop`` is set) the best fillers found so far are
    returned with ``complete=False``; they are not certified to be the best.
    """
    check_positive("top_k", top_k)
    if stop_rule not in STOP_RULES:
        raise SettingsError(f"unknown stop rule {stop_rule!r}: expected one of {', '.join(STOP_RULES)}")
    deadline = Deadline(max_seconds, stop)
    search = best_first(model, template, batch_size=batch_size, max_memory_mb=max_memory_mb, trace=trace,
                        max_trace_steps=max_trace_steps, max_trace_children=max_trace_children)
    best: list[float] = []  # max-heap (negated) of the top_k finished costs
    seen = 0
    first_found_iteration = None

    def done() -> bool:
        nonlocal seen, first_found_iteration
        for c, _ in search.finished[seen:]:
            if len(best) < top_k:
                heapq.heappush(best, -c)
            elif c < -best[0]:
                heapq.heapreplace(best, -c)
        seen = len(search.finished)
        if seen and first_found_iteration is None:
            first_found_iteration = search.iterations
        if stop_rule == "paper" and first_found_iteration is not None:
            return search.iterations >= 2 * max(first_found_iteration, 1)
        return len(best) >= min(top_k, search.space.template.space_size) and -best[0] <= search.frontier_min

    why = search.drive(done, max_nodes=max_nodes, deadline=deadline, progress=progress)
    if progress is not None:
        progress(search.nodes_expanded, max_nodes)
    message = why or ""
    if why is None and stop_rule == "paper" and search.heap and not (best and -best[0] <= search.frontier_min):
        message = "stopped by the paper's rule (2x the iterations of the first complete filler); not certified"
    result = make_result("dijkstra", search.ranked(int(top_k)), int(top_k), nodes=search.nodes_expanded,
                         counter=search.model, started=deadline.started, complete=why is None, message=message)
    if search.recorder is not None:
        result.trace = search.recorder.finish(result)
    return result
