"""Beam search, faithful to the paper's section 5.3: it can miss the secret, and that is the lesson.

The beam starts as the root. At each position with a choice every beam member
is extended with every unit the lattice allows there and only the
``beam_width`` cheapest extensions are kept; forced (literal) units are read
right after, without pruning (their cost added once the unit before is kept,
as in the paper's per-position sets). A prefix of the secret that is not among
the best prefixes is lost for good, even when the complete secret is the most
likely filler of all. Every row advances one unit per model call, so rows always
share one length (a transformer's key/value caches need that).
"""

from __future__ import annotations

import numpy as np
import torch

from ssviz.extraction.counting import CountingModel
from ssviz.extraction.lattice import Completions, Lattice
from ssviz.extraction.options import SearchOptions
from ssviz.extraction.result import Deadline, ExtractionResult, check_positive, make_result
from ssviz.extraction.trace import found_entry, node, recorder_for
from ssviz.memory import ensure_memory
from ssviz.models.base import LanguageModel


class Extensions:
    """Every (row, edge) extension of the beam's rows at positions ``pos``, in row then edge order.

    ``bits`` and ``cand`` (``[C]`` tensors) are their edge bits and costs; :meth:`pick`
    describes the chosen ones. Every row at one position (always, on an exact
    lattice) is the fast path: no index arrays over all candidates.
    """

    def __init__(self, lat: Lattice, log_probs: torch.Tensor, costs: torch.Tensor, pos: np.ndarray):
        self.lat, self.pos = lat, pos
        first = int(pos[0])
        self.place = first if (pos == first).all() else None
        if self.place is not None:
            e = self.edges = lat.edges(first)
            self.forced = lat.forced[first]
            bits = lat.edge_bits(log_probs, e.ids)
            self.bits, self.cand = bits.reshape(-1), (costs[:, None] + bits).reshape(-1)
            return
        places = np.unique(pos).tolist()
        self.forced = all(lat.forced[p] for p in places)
        parts = []
        for p in places:
            rows = np.flatnonzero(pos == p)
            e = lat.edges(p)
            if not len(e):  # no unit fits here: the row ends
                continue
            t_rows = torch.from_numpy(rows)
            bits = lat.edge_bits(log_probs[t_rows], e.ids)
            parts.append((np.repeat(rows, len(e)), np.tile(np.arange(len(e)), len(rows)),
                          bits.reshape(-1), (costs[t_rows][:, None] + bits).reshape(-1)))
        if not parts:
            self.par = self.arc = np.zeros(0, dtype=np.int64)
            self.bits = self.cand = torch.zeros(0, dtype=torch.float64)
            return
        par, arc = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        order = np.lexsort((arc, par))
        t_order = torch.from_numpy(order)
        self.par, self.arc = par[order], arc[order]
        self.bits = torch.cat([p[2] for p in parts])[t_order]
        self.cand = torch.cat([p[3] for p in parts])[t_order]

    def pick(self, idx: np.ndarray):
        """Parent rows, edge indices, positions, completion flags, units, next positions and slot characters
        of extensions ``idx``."""
        lat = self.lat
        if self.place is not None:
            e = self.edges
            par, arc = np.divmod(idx, max(len(e), 1))
            at = np.full(len(idx), self.place, dtype=np.int64)
            chars = np.array(e.chars, dtype=object)[arc].tolist()
            return par, arc, at, e.term[arc], e.ids[arc], e.nxt[arc], chars
        par, arc = self.par[idx], self.arc[idx]
        at = self.pos[par]
        nxt = lat.edge_next[at, arc]
        return par, arc, at, nxt > lat.last_slot, lat.edge_ids[at, arc], nxt, lat.edge_chars[at, arc].tolist()


def beam_search(model: LanguageModel, template, *, top_k: int = 1, options: SearchOptions | None = None,
                **kwargs) -> ExtractionResult:
    """The best complete fillers left in a beam of ``beam_width`` partial fillers.

    Options (keywords or ``options``): ``beam_width`` (1,000), ``max_seconds``,
    ``trace``, ``max_trace_steps``, ``max_trace_children``, ``progress``,
    ``stop``. Ties between extensions keep the earlier one (beam order, then edge
    order). Stopped or out of time: the fillers completed so far (none before the
    last choice of a one-path-per-filler lattice), ``complete=False``.
    """
    opts = SearchOptions.from_kwargs("beam_search", kwargs, options)
    check_positive("top_k", top_k)
    deadline = Deadline(opts.max_seconds, opts.stop)
    counter = CountingModel(model)
    lat = Lattice(counter, template)
    width = int(opts.beam_width)
    rows_max = min(width, lat.template.space_size)
    widest = max(len(lat.edges(p)) for p in range(lat.root_pos, lat.end)) or 1
    ensure_memory(rows_max * (counter.row_bytes(lat.max_units) + widest * 48 + 200),
                  f"a beam of {width:,}", "use a smaller beam width")
    recorder = recorder_for(opts, "beam", lat)
    costs = torch.tensor([lat.prefix_bits], dtype=torch.float64)
    pos = np.array([lat.root_pos], dtype=np.int64)
    fillers, names = [""], [""]
    log_probs, state = lat.ctx.log_probs, lat.ctx.state
    completions = Completions(lat)
    ranked: list[tuple[float, str]] = []
    step = None  # the recorded step being completed by its forced reads: expanded, children, kept, found
    nodes = steps = 0
    total = lat.choices
    why = None

    def record() -> None:
        if step is None:
            return
        if recorder.full:
            recorder.step([], [], 0, [])
        else:
            expanded, kids, kept, found = step
            recorder.step(expanded, kids, kept, [found_entry(f, c) for c, f in sorted(found)])

    with torch.inference_mode():
        while len(pos):
            ext = Extensions(lat, log_probs, costs, pos)
            forced = ext.forced
            if not forced:
                why = deadline.why_not_continue()
                if why is not None:
                    why = f"{why} after {steps} of {total} {lat.unit_name} step(s)"
                    break
            cand = ext.cand
            if forced:  # one extension per row: nothing to prune
                best = np.arange(len(cand))
            else:
                best = torch.argsort(cand, stable=True).numpy()[:width]
                nodes += len(pos)
                if recorder is not None:
                    record()
                    step = ([], [], 0, [])
                    if not recorder.full:
                        par, arc, at, *_ = ext.pick(np.arange(len(cand)))
                        kept = np.zeros(len(cand), dtype=bool)
                        kept[best] = True
                        kids = [lat.child(names[p], q, a, b, c, k)
                                for p, q, a, b, c, k in zip(par.tolist(), at.tolist(), arc.tolist(),
                                                            ext.bits.tolist(), cand.tolist(), kept.tolist())]
                        kids.sort(key=lambda d: d["cost"])
                        step = ([node(n, c) for n, c in zip(names, costs.tolist())], kids, len(best), [])
            parents, arcs, at, term, tokens, nxt, chars = ext.pick(best)
            if term.any():
                done = np.flatnonzero(term)
                completions.extend(cand[torch.from_numpy(best[done])].tolist(),
                                   [fillers[p] + chars[i] for p, i in zip(parents[done].tolist(), done.tolist())])
                new = completions.flush()
                ranked.extend(new)
                if step is not None:
                    step[3].extend(new)
                keep = np.flatnonzero(~term)
                parents, arcs, at, tokens, nxt = parents[keep], arcs[keep], at[keep], tokens[keep], nxt[keep]
                chars = [chars[i] for i in keep.tolist()]
                best = best[keep]
            if len(best):
                fillers = [fillers[p] + c for p, c in zip(parents.tolist(), chars)]
                if recorder is not None and not recorder.full:
                    names = [lat.name(names[p], q, a)
                             for p, q, a in zip(parents.tolist(), at.tolist(), arcs.tolist())]
                else:
                    names = fillers  # read only when recording
                costs = cand[torch.from_numpy(best)]
                pos = nxt
                state = counter.select_state(state, torch.from_numpy(parents))
                log_probs, state = counter.step(torch.from_numpy(tokens), state)
            else:
                pos = pos[:0]
            if not forced:
                steps += 1
                if opts.progress is not None:
                    opts.progress(min(steps, total), total)
    if recorder is not None:
        record()
    result = make_result("beam", ranked, int(top_k), nodes=nodes, counter=counter, started=deadline.started,
                         complete=why is None, message=why or "")
    if recorder is not None:
        result.trace = recorder.finish(result)
    return result
