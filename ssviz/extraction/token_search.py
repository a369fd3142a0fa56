"""Shortest-path, beam and sampling search over tokens, for transformers (the lattice: :mod:`.lattice`).

The algorithms are the character ones (:mod:`.shortest_path`, :mod:`.beam`,
:mod:`.sampling`) with tokens as edges: a node is (position, KV state), and
its children are the tokens :meth:`TokenLattice.edges` allows there. What
differs:

* **Batching by token length.** A KV cache grows with the tokens read, so only
  nodes that read the same number of tokens share a model call
  (:class:`~.states.KVStatePool`). Dijkstra groups each batch of popped nodes by
  length (one call per length); the beam and the sampler advance all their rows
  one token per step, so their rows always have one length.
* **Forced tokens.** A position with a single possible token (a literal token of
  a digit-splitting template) is read at once, as character search reads forced
  literals: one model step, no frontier entry.
* **Canonical costs.** Every complete filler is reported at its canonical
  log-perplexity, once: in the exact regime its path *is* its canonical
  tokenization (the result's top fillers are still re-scored by
  :mod:`ssviz.token_scoring`, which agrees to float rounding); for merging
  tokenizers every new filler is re-scored as soon as a path completes it, and
  the frontier test then certifies the top-k and the rank (see :mod:`.lattice`
  for when that is exact and when it rests on a sampled check).

Ties: entries of equal cost pop in (parent row, edge) order; runs are deterministic.
"""

from __future__ import annotations

import heapq

import numpy as np
import torch

from ssviz.extraction.frontier import (
    DEFAULT_MAX_MEMORY_MB,
    FINISHED_ENTRY_BYTES,
    FRONTIER_ENTRY_BYTES,
    Frontier,
)
from ssviz.extraction.lattice import TokenLattice, canonical_top
from ssviz.extraction.result import ExtractionResult, check_positive, make_result
from ssviz.extraction.space import CountingModel
from ssviz.extraction.states import make_pool
from ssviz.extraction.trace import (
    DEFAULT_MAX_CHILDREN,
    DEFAULT_MAX_STEPS,
    found_entry,
    node,
    recorder_for,
    token_child,
)
from ssviz.memory import ensure_memory
from ssviz.models.base import LanguageModel, state_nbytes
from ssviz.scoring import LN2

ROW_ENTRY_BYTES = 200  # per expanded node: its position, length, filler and trace name (CPython objects)


class _Completed:
    """Complete fillers, each once: path costs in the exact regime, canonical re-scores otherwise."""

    def __init__(self, lattice: TokenLattice):
        self.lattice = lattice
        self.pending: list[tuple[float, str]] = []
        self.seen: set[str] = set()

    def add(self, cost: float, filler: str) -> None:
        if filler not in self.seen:
            self.pending.append((cost, filler))

    def flush(self) -> list[tuple[float, str]]:
        """The new distinct fillers since the last flush, with their reported cost."""
        if not self.pending:
            return []
        if self.lattice.exact:  # one path per filler: its cost is the canonical one
            new: dict[str, float] = {}
            for c, f in self.pending:
                if f not in new or c < new[f]:
                    new[f] = c
            out = [(c, f) for f, c in new.items()]
        else:
            out = canonical_top(self.lattice, self.pending)
        self.pending = []
        self.seen.update(f for _, f in out)
        return out


def _report(lattice: TokenLattice, ranked: list[tuple[float, str]], top_k: int) -> list[tuple[float, str]]:
    """The fillers a result lists: in the exact regime the best ``top_k`` path costs re-scored canonically."""
    if lattice.exact:
        return canonical_top(lattice, heapq.nsmallest(top_k, ranked))
    return ranked


def _row_bytes(model: LanguageModel, tokens: int) -> int:
    """Bytes one row of state needs at ``tokens`` tokens: the model's own estimate when it has one."""
    estimate = getattr(model, "row_bytes", None)
    return int(estimate(tokens)) if estimate is not None else state_nbytes(model.initial_state(1))


# --- shortest path -------------------------------------------------------------------------------
class TokenBestFirstSearch(Frontier):
    """Batched Dijkstra over token paths; frontier entries are (cost, parent row, edge index).

    ``nodes_expanded`` counts entries stepped through the model; in the merging
    regime complete paths also wait in the frontier, and popping one only
    re-scores its filler (no model step, not counted).
    """

    def __init__(self, model: LanguageModel, template, *, batch_size: int = 64,
                 max_memory_mb: float = DEFAULT_MAX_MEMORY_MB, trace: bool = False,
                 max_trace_steps: int = DEFAULT_MAX_STEPS, max_trace_children: int = DEFAULT_MAX_CHILDREN):
        check_positive("batch_size", batch_size)
        self.model = CountingModel(model)
        self.space = lat = TokenLattice(self.model, template)
        self.batch_size = int(batch_size)
        check_positive("max_memory_mb", max_memory_mb)
        self.max_bytes = int(max_memory_mb * 2**20)
        ensure_memory(self.max_bytes, f"a search memory budget of {max_memory_mb:,} MB", "give a smaller budget")
        self.pool = make_pool(self.model, self.max_bytes)
        self.recorder = recorder_for(trace, "dijkstra", lat, max_trace_steps, max_trace_children)
        self.heap: list[tuple[float, int, int]] = []
        self.finished: list[tuple[float, str]] = []
        self.completed = _Completed(lat)
        self.row_pos: list[int] = []
        self.row_len: list[int] = []
        self.row_filler: list[str] = []
        self.row_name: list[str] = []
        self.nodes_expanded = 0
        self.iterations = 0
        with torch.inference_mode():
            costs = torch.tensor([lat.prefix_bits], dtype=torch.float64)
            root, kids = self._expand(lat.ctx.state, costs, lat.root_pos, len(lat.root_tokens), [""], [""],
                                      lat.ctx.log_probs)
            self.finished.extend(self.completed.flush())
        if self.recorder is not None:
            self.recorder.step(root, kids, len(self.heap),
                               [found_entry(f, c) for c, f in sorted(self.finished)])

    @property
    def memory_bytes(self) -> int:
        """State rows plus frontier, finished and row entries (estimated)."""
        return (self.pool.bytes_used + FRONTIER_ENTRY_BYTES * len(self.heap)
                + FINISHED_ENTRY_BYTES * len(self.finished) + ROW_ENTRY_BYTES * len(self.row_pos))

    def ranked(self, top_k: int) -> list[tuple[float, str]]:
        return _report(self.space, self.finished, top_k)

    def _expand(self, state, costs: torch.Tensor, pos: int, length: int, fillers: list[str], names: list[str],
                log_probs: torch.Tensor) -> tuple[list[dict], list[dict]]:
        """Nodes at ``pos`` (one batch ``state``): forced tokens read, then their children pushed or completed.

        Returns the trace entries of the nodes (after their forced tokens) and of their children.
        """
        lat, model = self.space, self.model
        while True:  # a single possible token: read it now (no frontier entry)
            e = lat.edges(pos)
            if len(e) != 1 or e.term[0]:
                break
            tok = int(e.ids[0])
            costs = costs - log_probs[:, tok].double() / LN2
            log_probs, state = model.step(torch.full((len(fillers),), tok, dtype=torch.long), state)
            fillers = [f + e.chars[0] for f in fillers]
            names = [lat.node_name(n, e.texts[0]) for n in names]
            pos, length = int(e.nxt[0]), length + 1
        recording = self.recorder is not None and not self.recorder.full
        expanded = [node(n, c) for n, c in zip(names, costs.tolist())] if recording else []
        e = lat.edges(pos)
        if not len(e):
            return expanded, []
        rows = self.pool.append(state).tolist()
        self.row_pos.extend([pos] * len(rows))
        self.row_len.extend([length] * len(rows))
        self.row_filler.extend(fillers)
        self.row_name.extend(names)
        bits = lat.edge_bits(log_probs, e)
        child_costs = (costs[:, None] + bits).tolist()
        # exact regime: a complete path's cost is final now. Merging: it waits in the frontier and its filler is
        # re-scored only if popped; every filler not yet found still has a frontier entry (on its canonical path)
        # costing at most its canonical score, so the frontier test stays sound
        term = np.flatnonzero(e.term).tolist() if lat.exact else []
        open_ = np.flatnonzero(~e.term).tolist() if lat.exact else list(range(len(e)))
        push, heap = heapq.heappush, self.heap
        for r, f, cs in zip(rows, fillers, child_costs):
            for a in term:
                self.completed.add(cs[a], f + e.chars[a])
            for a in open_:
                push(heap, (cs[a], r, a))
        if not recording:
            return expanded, []
        out = [token_child(lat.node_name(n, e.texts[a]), n, e.texts[a], e.ids[a], b, c)
               for n, cs, bs in zip(names, child_costs, bits.tolist()) for a, (b, c) in enumerate(zip(bs, cs))]
        out.sort(key=lambda d: d["cost"])
        return expanded, out

    def iterate(self, max_pop: int | None = None) -> None:
        """Pop up to ``batch_size`` cheapest entries; step them, one model call per token length."""
        n = min(self.batch_size, len(self.heap), max_pop if max_pop is not None else len(self.heap))
        if n <= 0:
            return
        lat = self.space
        popped = [heapq.heappop(self.heap) for _ in range(n)]
        n_found = len(self.finished)
        recording = self.recorder is not None and not self.recorder.full
        expanded, children = [], []
        by_length: dict[int, list[int]] = {}
        stepped = 0
        for i, (c, r, a) in enumerate(popped):
            e = lat.edges(self.row_pos[r])
            if e.term[a]:  # a complete path (merging regime): its filler is re-scored below
                self.completed.add(c, self.row_filler[r] + e.chars[a])
            else:
                by_length.setdefault(self.row_len[r], []).append(i)
                stepped += 1
        with torch.inference_mode():
            for length in sorted(by_length):
                idx = by_length[length]
                prow = [popped[i][1] for i in idx]
                edges = [lat.edges(self.row_pos[r]) for r in prow]
                picks = [popped[i][2] for i in idx]
                tokens = torch.tensor([int(e.ids[a]) for e, a in zip(edges, picks)], dtype=torch.long)
                nxt = np.array([int(e.nxt[a]) for e, a in zip(edges, picks)], dtype=np.int64)
                costs = torch.tensor([popped[i][0] for i in idx], dtype=torch.float64)
                fillers = [self.row_filler[r] + e.chars[a] for r, e, a in zip(prow, edges, picks)]
                names = [lat.node_name(self.row_name[r], e.texts[a]) for r, e, a in zip(prow, edges, picks)]
                log_probs, state = self.model.step(tokens, self.pool.gather(torch.tensor(prow)))
                places = np.unique(nxt)
                for p in places.tolist():
                    sub = np.flatnonzero(nxt == p)
                    if len(places) == 1:
                        g_lp, g_state, g_cost = log_probs, state, costs
                    else:
                        ti = torch.from_numpy(sub)
                        g_lp, g_state, g_cost = log_probs[ti], self.model.select_state(state, ti), costs[ti]
                    g_fill = [fillers[i] for i in sub.tolist()]
                    g_names = [names[i] for i in sub.tolist()]
                    done, kids = self._expand(g_state, g_cost, p, length + 1, g_fill, g_names, g_lp)
                    expanded.extend(done)
                    children.extend(kids)
            self.finished.extend(self.completed.flush())
        self.nodes_expanded += stepped
        self.iterations += 1
        if self.recorder is not None:  # past its step cap, the recorder only marks the trace as capped
            self.recorder.search_step(expanded, children, len(self.heap), self.finished[n_found:] if recording else [])


# --- beam ------------------------------------------------------------------------------------------
def _candidates(lat: TokenLattice, log_probs: torch.Tensor, costs: torch.Tensor, pos: list[int]):
    """Every (row, edge) extension of rows at positions ``pos``, in row then edge order.

    Returns parent rows, edge indices, whether each completes a filler, edge bits and costs.
    """
    pos_arr = np.asarray(pos, dtype=np.int64)
    parts = []
    for p in np.unique(pos_arr).tolist():
        rows = np.flatnonzero(pos_arr == p)
        e = lat.edges(p)
        if not len(e):
            continue
        bits = lat.edge_bits(log_probs[torch.from_numpy(rows)], e)
        parts.append((np.repeat(rows, len(e)), np.tile(np.arange(len(e)), len(rows)), np.tile(e.term, len(rows)),
                      bits.reshape(-1), (costs[torch.from_numpy(rows)][:, None] + bits).reshape(-1)))
    if not parts:
        none = torch.zeros(0, dtype=torch.float64)
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool), none, none
    par, arc, term = (np.concatenate([p[i] for p in parts]) for i in range(3))
    order = np.lexsort((arc, par))  # beam order, then edge order
    t_order = torch.from_numpy(order)
    return (par[order], arc[order], term[order], torch.cat([p[3] for p in parts])[t_order],
            torch.cat([p[4] for p in parts])[t_order])


def token_beam(counter: CountingModel, lat: TokenLattice, deadline, *, beam_width: int, top_k: int, recorder,
               progress=None) -> ExtractionResult:
    """Beam search over tokens: each step extends every beam row by one token and keeps the cheapest ``beam_width``.

    Rows advance one token per step, so they always share one KV length. The
    cheapest ``beam_width`` extensions are kept; those that complete a filler
    leave the beam as results (as the last character step's beam does for
    characters), the others are the next beam. Heuristic: a pruned prefix is
    lost for good, as with characters.
    """
    width = int(beam_width)
    rows_max = min(width, lat.template.space_size)
    widest = max(len(lat.edges(p)) for p in range(lat.root_pos, lat.end)) or 1
    ensure_memory(rows_max * (_row_bytes(counter, lat.max_tokens) + widest * 48 + 200),
                  f"a beam of {width:,}", "use a smaller beam width")
    costs = torch.tensor([lat.prefix_bits], dtype=torch.float64)
    pos, fillers, names = [lat.root_pos], [""], [""]
    log_probs, state = lat.ctx.log_probs, lat.ctx.state
    completed = _Completed(lat)
    ranked: list[tuple[float, str]] = []
    nodes = steps = 0
    total = lat.end - lat.root_pos
    why = None
    with torch.inference_mode():
        while pos:
            why = deadline.why_not_continue()
            if why is not None:
                why = f"{why} after {steps} token step(s)"
                break
            par, arc, term, bits, cand = _candidates(lat, log_probs, costs, pos)
            order = torch.argsort(cand, stable=True).numpy()
            cand_l = cand.tolist()
            best = order[:width]
            for i in best[term[best]].tolist():
                completed.add(cand_l[i], fillers[par[i]] + lat.edges(pos[par[i]]).chars[arc[i]])
            keep = best[~term[best]]
            kept = np.zeros(len(cand_l), dtype=bool)
            kept[best] = True
            new = completed.flush()
            ranked.extend(new)
            nodes += len(pos)
            if recorder is not None:
                if recorder.full:
                    recorder.step([], [], 0, [])
                else:
                    edges = [lat.edges(pos[p]) for p in par.tolist()]
                    kids = [token_child(lat.node_name(names[p], e.texts[a]), names[p], e.texts[a], e.ids[a], b, c, k)
                            for p, a, e, b, c, k in zip(par.tolist(), arc.tolist(), edges, bits.tolist(), cand_l,
                                                        kept.tolist())]
                    kids.sort(key=lambda d: d["cost"])
                    recorder.step([node(n, c) for n, c in zip(names, costs.tolist())], kids, len(keep),
                                  [found_entry(f, c) for c, f in sorted(new)])
            if len(keep):
                parents = torch.from_numpy(par[keep])
                edges = [lat.edges(pos[p]) for p in par[keep].tolist()]
                arcs = arc[keep].tolist()
                tokens = torch.tensor([int(e.ids[a]) for e, a in zip(edges, arcs)], dtype=torch.long)
                fillers = [fillers[p] + e.chars[a] for p, e, a in zip(par[keep].tolist(), edges, arcs)]
                names = [lat.node_name(names[p], e.texts[a]) for p, e, a in zip(par[keep].tolist(), edges, arcs)]
                pos = [int(e.nxt[a]) for e, a in zip(edges, arcs)]
                costs = cand[torch.from_numpy(keep)]
                log_probs, state = counter.step(tokens, counter.select_state(state, parents))
            else:
                pos = []
            steps += 1
            if progress is not None:
                progress(min(steps, total), total)
    return make_result("beam", _report(lat, ranked, int(top_k)), int(top_k), nodes=nodes, counter=counter,
                       started=deadline.started, complete=why is None, message=why or "")


# --- sampling --------------------------------------------------------------------------------------
def _draw(counter: CountingModel, lat: TokenLattice, n: int, gen: torch.Generator, shown: int):
    """``n`` token paths drawn from the model restricted to the lattice's edges (renormalized).

    Returns the fillers (None for a path that reached a dead end), their path
    costs (true, unrestricted probabilities), the rows read, and for the first
    ``shown`` rows one list per token step of ``(row, parent name, token text,
    token id, edge bits, cost)``.
    """
    state = counter.select_state(lat.ctx.state, torch.zeros(n, dtype=torch.long))
    log_probs = lat.ctx.log_probs.expand(n, -1)
    costs = torch.full((n,), lat.prefix_bits, dtype=torch.float64)
    pos = np.full(n, lat.root_pos, dtype=np.int64)
    fillers: list[str | None] = [""] * n
    names = [""] * n
    live = np.arange(n)
    done = np.zeros(n, dtype=bool)
    reads, log = 0, []
    while len(live):
        reads += len(live)
        tokens = np.zeros(len(live), dtype=np.int64)
        cont = np.zeros(len(live), dtype=bool)
        entries = []
        for p in np.unique(pos[live]).tolist():
            sel = np.flatnonzero(pos[live] == p)
            e = lat.edges(p)
            if not len(e):  # no token fits here: the path is abandoned
                for i in live[sel].tolist():
                    fillers[i] = None
                continue
            sub = log_probs[torch.from_numpy(sel)][:, torch.from_numpy(e.ids)].double()
            pick = torch.multinomial(torch.softmax(sub, dim=1), 1, generator=gen)[:, 0]
            edge = (-sub.gather(1, pick[:, None])[:, 0] / LN2)
            pick_l = pick.tolist()
            rows = live[sel]
            costs[torch.from_numpy(rows)] += edge
            for i, a, b in zip(rows.tolist(), pick_l, edge.tolist()):
                fillers[i] += e.chars[a]
                if i < shown:
                    entries.append((i, names[i], e.texts[a], int(e.ids[a]), b, float(costs[i])))
                names[i] = lat.node_name(names[i], e.texts[a])
                pos[i] = e.nxt[a]
            tokens[sel] = e.ids[pick_l]
            cont[sel] = ~e.term[pick_l]
            done[rows[e.term[pick_l]]] = True
        if entries:
            log.append(entries)
        cont &= np.array([fillers[i] is not None for i in live.tolist()], dtype=bool)
        if not cont.any():
            break
        keep = torch.from_numpy(np.flatnonzero(cont))
        state = counter.select_state(state, keep) if len(keep) < len(live) else state
        log_probs, state = counter.step(torch.from_numpy(tokens[cont]), state)
        live = live[cont]
    fillers = [f if d else None for f, d in zip(fillers, done.tolist())]
    return fillers, costs.numpy(), reads, log


def token_sample(counter: CountingModel, lat: TokenLattice, deadline, *, samples: int, seed: int, top_k: int,
                 chunk_size: int, recorder, progress=None) -> ExtractionResult:
    """The best distinct fillers among ``samples`` token paths drawn from the model (seeded)."""
    ensure_memory(min(int(samples), lat.template.space_size) * (lat.template.filler_length + 120)
                  + min(int(chunk_size), int(samples)) * _row_bytes(counter, lat.max_tokens),
                  f"{int(samples):,} samples", "draw fewer samples")
    gen = torch.Generator().manual_seed(int(seed))
    best: dict[str, float] = {}
    completed = _Completed(lat)
    done = nodes = 0
    why = None
    with torch.inference_mode():
        while done < samples:
            why = deadline.why_not_continue()
            if why is not None:
                break
            n = min(int(chunk_size), int(samples) - done)
            shown = recorder.max_children if recorder is not None else 0
            fillers, costs, reads, log = _draw(counter, lat, n, gen, shown)
            nodes += reads
            for f, c in zip(fillers, costs.tolist()):
                if f is not None:
                    completed.add(c, f)
                    if lat.exact and c < best.get(f, float("inf")):
                        best[f] = c
            for c, f in completed.flush():
                best.setdefault(f, c)
            if recorder is not None:
                _record_draw(recorder, log, fillers, best, n > shown)
            done += n
            if progress is not None:
                progress(done, int(samples))
    result = make_result("sampling", _report(lat, [(c, f) for f, c in best.items()], int(top_k)), int(top_k),
                         nodes=nodes, counter=counter, started=deadline.started, complete=why is None,
                         message=f"{why} after {done:,} of {int(samples):,} samples" if why else "")
    return result


def _record_draw(recorder, log: list, fillers: list, best: dict[str, float], capped: bool) -> None:
    """One trace step per token step of a batch: the first samples' paths and the token each drew."""
    if capped:
        recorder.trace["capped"] = True
    for k, entries in enumerate(log):
        if recorder.full:
            recorder.step([], [], 0, [])
            return
        expanded = [node(parent, c - b) for _, parent, _, _, b, c in entries]
        sep = recorder.trace.get("separator", "|")
        kids = [token_child(f"{parent}{sep}{text}" if parent else text, parent, text, tok, b, c)
                for _, parent, text, tok, b, c in entries]
        found = []
        if k == len(log) - 1:  # the batch's complete samples, at its last step
            rows = sorted({e[0] for step in log for e in step})
            found = [found_entry(fillers[i], best[fillers[i]]) for i in rows if fillers[i] in best]
        recorder.step(expanded, kids, len(entries), found)
