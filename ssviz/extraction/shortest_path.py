"""Shortest-path (Dijkstra) search over the lattice of partial fillers (the paper's section 5.4), any model.

Edge weight = -log2 P(unit | text so far) >= 0, so a node's cost (the root's is
the root units' log-perplexity) never decreases along a path and complete
fillers come out in increasing log-perplexity: the first one certified is the
most likely filler, and continuing enumerates the next ones in order.

Batched pops. Each iteration pops up to ``batch_size`` cheapest frontier nodes
and steps them in one model call per group of rows the model's state pool can
join (one group for recurrent states; one per token length for key/value
caches). That breaks "the first complete filler popped is the best", which the
paper restores by running as many iterations again. We use the exact criterion
instead (``stop_rule="exact"``): a complete filler of cost c is certified once
every frontier node costs >= c, since all other fillers descend from frontier
nodes. The top-k are final once the k-th best found is certified.
``stop_rule="paper"`` applies the paper's heuristic (stop after 2x the
iterations of the first complete filler).

Lazy children. A popped node reads its last unit (and the literal units forced
after it) only when popped; its children enter the frontier as (parent row,
edge) with cost = parent cost + edge, the state of the parent kept in the
model's :meth:`~ssviz.models.LanguageModel.state_pool`. One model read per
expanded node; forced costs are added when the child is popped, which keeps the
order exact (costs only grow). In the exact regime complete fillers are
finished as soon as they are created; with a merging tokenizer complete paths
wait in the frontier and their filler is re-scored canonically when popped
(:mod:`.lattice` says why that stays certified).

Memory: ``max_memory_mb`` bounds the state rows plus the frontier, finished
and row entries (about 128 bytes per frontier entry); reaching it ends the run
with a partial result, like the node and time budgets.

Ties: nodes of equal cost pop in (parent row, edge) order, so the outcome is
deterministic; fillers whose costs are exactly equal may appear in either order
relative to brute force.
"""

from __future__ import annotations

import heapq

import torch

from ssviz.extraction.counting import CountingModel
from ssviz.extraction.lattice import Completions, Lattice
from ssviz.extraction.options import SearchOptions
from ssviz.extraction.result import Deadline, ExtractionResult, check_positive, make_result
from ssviz.extraction.trace import node, recorder_for
from ssviz.memory import ensure_memory
from ssviz.models.base import LanguageModel
from ssviz.models.pool import PoolFullError
from ssviz.progress import tell
from ssviz.scoring import LN2

# approximate CPython sizes: a frontier entry (tuple, float, int, list slot), a finished (tuple, float, str),
# an expanded node's row (its position, filler and trace name)
FRONTIER_ENTRY_BYTES = 128
FINISHED_ENTRY_BYTES = 144
ROW_ENTRY_BYTES = 200


class BestFirstSearch:
    """The frontier, the finished fillers and one batched iteration; drivers decide when to stop.

    ``heap`` holds the frontier as (cost, parent row, edge index), ``finished`` the
    complete fillers as ``(log-perplexity, filler)`` in the order found.
    ``nodes_expanded`` counts entries stepped through the model (popping a complete
    path of a merging tokenizer only re-scores its filler: not counted).
    """

    def __init__(self, model: LanguageModel, template, options: SearchOptions):
        self.model = CountingModel(model)
        self.lattice = lat = Lattice(self.model, template)
        self.batch_size = int(options.batch_size)
        self.max_bytes = options.max_bytes
        ensure_memory(self.max_bytes, f"a search memory budget of {options.max_memory_mb:,} MB",
                      "give a smaller budget")
        self.pool = self.model.state_pool(self.max_bytes)
        self.recorder = recorder_for(options, "dijkstra", lat)
        self.heap: list[tuple[float, int, int]] = []
        self.finished: list[tuple[float, str]] = []
        self.completions = Completions(lat)
        self.row_pos: list[int] = []
        self.row_filler: list[str] = []
        self.row_name: list[str] = []
        self.nodes_expanded = 0
        self.iterations = 0
        expanded: list[dict] = []
        children: list[dict] = []
        with torch.inference_mode():
            costs = torch.tensor([lat.prefix_bits], dtype=torch.float64)
            self._expand(lat.ctx.state, costs, lat.root_pos, [""], [""], lat.ctx.log_probs, expanded, children)
            self.finished.extend(self.completions.flush())
        if self.recorder is not None:
            self.recorder.search_step(expanded, children, len(self.heap), self.finished)

    @property
    def recording(self) -> bool:
        return self.recorder is not None and not self.recorder.full

    @property
    def memory_bytes(self) -> int:
        """State rows plus frontier, finished and row entries (estimated)."""
        return (self.pool.bytes_used + FRONTIER_ENTRY_BYTES * len(self.heap)
                + FINISHED_ENTRY_BYTES * len(self.finished) + ROW_ENTRY_BYTES * len(self.row_pos))

    @property
    def frontier_min(self) -> float:
        return self.heap[0][0] if self.heap else float("inf")

    def ranked(self) -> list[tuple[float, str]]:
        """The finished fillers a result reports, as ``(cost, filler)``."""
        return self.finished

    def _expand(self, state, costs: torch.Tensor, pos: int, fillers: list[str], names: list[str],
                log_probs: torch.Tensor, expanded: list[dict], children: list[dict]) -> None:
        """Nodes at ``pos`` (one batch ``state``): forced units read, then their children pushed or finished.

        Appends the trace entries of the nodes (after their forced units) and of their children.
        """
        lat, model = self.lattice, self.model
        recording = self.recording
        while lat.forced[pos]:  # a literal: read it now (no frontier entry)
            tok = lat.ids_of[pos][0]
            costs = costs - log_probs[:, tok].double().cpu() / LN2
            if recording:
                names = [lat.name(n, pos, 0) for n in names]
            if lat.terminal(lat.next_of[pos][0]):  # the last unit of the text: complete, no read needed
                self._finish(costs.tolist(), fillers)
                if recording:
                    expanded.extend(node(n, c) for n, c in zip(names, costs.tolist()))
                return
            log_probs, state = model.step(torch.full((len(fillers),), tok, dtype=torch.long), state)
            pos = lat.next_of[pos][0]
        if recording:
            expanded.extend(node(n, c) for n, c in zip(names, costs.tolist()))
        e = lat.edges(pos)
        if not len(e):  # a dead end (merging: no token fits here)
            return
        bits = lat.edge_bits(log_probs, e.ids)
        child_costs = (costs[:, None] + bits).tolist()
        chars = e.chars
        if lat.exact and e.term[0]:  # exact: every child is a complete filler, at its final cost
            finished = self.finished
            for f, cs in zip(fillers, child_costs):
                finished.extend(zip(cs, [f + ch for ch in chars]))
        else:  # children enter the frontier (merging: complete paths too, their fillers re-scored if popped)
            rows = self.pool.append(state).tolist()
            self.row_pos.extend([pos] * len(rows))
            self.row_filler.extend(fillers)
            self.row_name.extend(names if recording else [""] * len(rows))
            push, heap = heapq.heappush, self.heap
            for r, cs in zip(rows, child_costs):
                for a, c in enumerate(cs):
                    push(heap, (c, r, a))
        if recording:
            children.extend(lat.child(n, pos, a, b, c)
                            for n, cs, bs in zip(names, child_costs, bits.tolist())
                            for a, (b, c) in enumerate(zip(bs, cs)))

    def _finish(self, costs: list[float], fillers: list[str]) -> None:
        """Complete fillers: final on the exact lattice (one path each), re-scored at the next flush otherwise."""
        if self.lattice.exact:
            self.finished.extend(zip(costs, fillers))
        else:
            for c, f in zip(costs, fillers):
                self.completions.add(c, f)

    def iterate(self, max_pop: int | None = None) -> None:
        """Pop up to ``batch_size`` cheapest entries; step them, one model call per group of joinable rows."""
        n = min(self.batch_size, len(self.heap), max_pop if max_pop is not None else len(self.heap))
        if n <= 0:
            return
        lat = self.lattice
        pop, heap = heapq.heappop, self.heap
        popped = [pop(heap) for _ in range(n)]
        n_found = len(self.finished)
        recording = self.recording
        expanded: list[dict] = []
        children: list[dict] = []
        next_of, chars_of = lat.next_of, lat.chars_of
        row_pos, row_filler = self.row_pos, self.row_filler
        if not lat.exact:  # complete paths (merging): their fillers are re-scored at the flush below
            done = [p for p in popped if next_of[row_pos[p[1]]][p[2]] > lat.last_slot]
            if done:
                self._finish([c for c, _, _ in done], [row_filler[r] + chars_of[row_pos[r]][a] for _, r, a in done])
                popped = [p for p in popped if next_of[row_pos[p[1]]][p[2]] <= lat.last_slot]
        rows = [r for _, r, _ in popped]
        pos = [row_pos[r] for r in rows]
        arcs = [a for _, _, a in popped]
        nxt = [next_of[p][a] for p, a in zip(pos, arcs)]
        fillers = [row_filler[r] + chars_of[p][a] for r, p, a in zip(rows, pos, arcs)]
        # trace names: read only when recording
        names = [lat.name(self.row_name[r], p, a) for r, p, a in zip(rows, pos, arcs)] if recording else fillers
        costs_all = torch.tensor([c for c, _, _ in popped], dtype=torch.float64)
        tokens_all = torch.tensor([lat.ids_of[p][a] for p, a in zip(pos, arcs)], dtype=torch.long)
        with torch.inference_mode():
            for group in self.pool.groups(rows):
                whole = len(group) == len(rows)
                ti = None if whole else torch.tensor(group, dtype=torch.long)
                log_probs, state = self.model.step(tokens_all if whole else tokens_all[ti],
                                                   self.pool.gather(torch.tensor([rows[i] for i in group])))
                costs = costs_all if whole else costs_all[ti]
                g_nxt = nxt if whole else [nxt[i] for i in group]
                places = sorted(set(g_nxt))
                for p in places:
                    if len(places) == 1:
                        members, g_lp, g_state, g_cost = group, log_probs, state, costs
                    else:
                        sub = [j for j, q in enumerate(g_nxt) if q == p]
                        si = torch.tensor(sub, dtype=torch.long)
                        members = [group[j] for j in sub]
                        g_lp, g_state, g_cost = log_probs[si], self.model.select_state(state, si), costs[si]
                    self._expand(g_state, g_cost, p, [fillers[i] for i in members], [names[i] for i in members],
                                 g_lp, expanded, children)
            self.finished.extend(self.completions.flush())
        self.nodes_expanded += len(rows)
        self.iterations += 1
        if self.recorder is not None:  # past its step cap, the recorder only marks the trace as capped
            self.recorder.search_step(expanded, children, len(self.heap), self.finished[n_found:] if recording else [])

    def drive(self, done, *, max_nodes: int, deadline: Deadline, progress=None, describe=None) -> str | None:
        """Iterate until ``done()`` or the frontier is empty (None), or a budget ends the run (its message).

        Progress counts expanded nodes against the budget; ``describe()`` adds what they mean (a status line:
        the frontier's cost against the target's)."""
        check_positive("max_nodes", max_nodes)
        while not done() and self.heap:
            why = deadline.why_not_continue()
            if why is None and self.nodes_expanded >= max_nodes:
                why = f"node budget of {max_nodes:,} expanded nodes reached"
            if why is None and self.memory_bytes > self.max_bytes:
                why = (f"memory budget of {self.max_bytes / 2**20:g} MB reached (raise it with --max-memory, or "
                       "lower --batch-size or --max-nodes)")
            if why is not None:
                return why
            try:
                self.iterate(max_pop=max_nodes - self.nodes_expanded)
            except PoolFullError as e:
                return str(e)
            if progress is not None and self.iterations % 16 == 0:
                tell(progress, self.nodes_expanded, max_nodes, describe() if describe else None)
        return None


def shortest_path(model: LanguageModel, template, *, top_k: int = 1, options: SearchOptions | None = None,
                  **kwargs) -> ExtractionResult:
    """The ``top_k`` most likely fillers, exactly (``stop_rule="exact"``), by batched Dijkstra search.

    Options (keywords or ``options``, :class:`~ssviz.extraction.options.SearchOptions`):
    ``max_nodes`` (100,000), ``batch_size``, ``max_seconds``, ``stop_rule``,
    ``max_memory_mb``, ``trace``, ``max_trace_steps``, ``max_trace_children``,
    ``progress``, ``stop``. When a budget runs out (or ``stop`` is set) the best
    fillers found so far are returned with ``complete=False``; they are not
    certified to be the best.
    """
    check_positive("top_k", top_k)
    opts = SearchOptions.from_kwargs("shortest_path", kwargs, options)
    deadline = Deadline(opts.max_seconds, opts.stop)
    search = BestFirstSearch(model, template, opts)
    best: list[float] = []  # max-heap (negated) of the top_k finished costs
    seen = 0
    first_found_iteration = None
    space_size = search.lattice.template.space_size

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
        if opts.stop_rule == "paper" and first_found_iteration is not None:
            return search.iterations >= 2 * max(first_found_iteration, 1)
        return len(best) >= min(top_k, space_size) and -best[0] <= search.frontier_min

    def describe() -> str:
        found = (f"{len(search.finished):,} filler(s) complete, best {-max(best):.2f} bits; "
                 if best else "")
        return (f"{search.nodes_expanded:,} nodes expanded; {found}"
                f"frontier at {search.frontier_min:.2f} bits (no filler left to find is more likely)")

    why = search.drive(done, max_nodes=opts.max_nodes, deadline=deadline, progress=opts.progress, describe=describe)
    tell(opts.progress, search.nodes_expanded, opts.max_nodes, describe() if search.heap else None)
    message = why or ""
    if why is None and opts.stop_rule == "paper" and search.heap and not (best and -best[0] <= search.frontier_min):
        message = "stopped by the paper's rule (2x the iterations of the first complete filler); not certified"
    result = make_result("dijkstra", search.ranked(), int(top_k), nodes=search.nodes_expanded,
                         counter=search.model, started=deadline.started, complete=why is None, message=message)
    if search.recorder is not None:
        result.trace = search.recorder.finish(result)
    return result
