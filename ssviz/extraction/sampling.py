"""Generative sampling (the paper's section 5.2): let the model write the slots, keep the best.

Each path is drawn unit by unit from the model's next-unit distribution
restricted to the units the lattice allows there (renormalized); forced
(literal) units are read without a draw. A filler's cost is its true
log-perplexity (the unrestricted probabilities; re-scored canonically for a
merging tokenizer), so sampled fillers rank exactly as the scorer ranks them.
``samples`` draws run in batches of ``chunk_size``; a seeded
``torch.Generator`` makes runs reproducible.
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


def draw(counter: CountingModel, lat: Lattice, n: int, gen: torch.Generator, shown: int):
    """``n`` paths drawn from the model restricted to the lattice's edges (renormalized).

    Returns the fillers (None for a path that reached a dead end), their path
    costs (true, unrestricted probabilities), the number of draws (rows at a
    position with a choice), and for the first ``shown`` rows one list per
    position with a choice of ``(expanded entry, child entry)``, whose costs leave
    out forced units (docs/trace.md).
    """
    state = counter.select_state(lat.ctx.state, torch.zeros(n, dtype=torch.long))
    log_probs = lat.ctx.log_probs.expand(n, -1)
    costs = torch.full((n,), lat.prefix_bits, dtype=torch.float64)
    shown = min(n, shown)
    drawn = [0.0] * shown  # the shown rows' drawn edges so far (their trace costs leave out forced units)
    root = lat.prefix_bits
    names = [""] * shown
    pos = np.full(n, lat.root_pos, dtype=np.int64)
    fillers = np.full(n, "", dtype=object)
    dead = np.zeros(n, dtype=bool)
    live = np.arange(n)
    draws, log = 0, []
    while len(live):
        tokens = np.zeros(len(live), dtype=np.int64)
        cont = np.ones(len(live), dtype=bool)
        entries = []
        at = pos[live]
        places = np.unique(at).tolist()
        for p in places:
            whole = len(places) == 1
            sel = np.arange(len(live)) if whole else np.flatnonzero(at == p)
            rows = live[sel]
            e = lat.edges(p)
            if not len(e):  # no unit fits here: the path is abandoned
                dead[rows] = True
                cont[sel] = False
                continue
            lp = log_probs if whole else log_probs[torch.from_numpy(sel)]
            bits = lat.edge_bits(lp, e.ids)
            forced = lat.forced[p]
            if forced:
                pick = np.zeros(len(sel), dtype=np.int64)
                edge = bits[:, 0]
            else:
                restricted = torch.log_softmax(lp[:, torch.from_numpy(e.ids).to(lp.device)].double().cpu(), dim=1)
                choice = torch.multinomial(restricted.exp(), 1, generator=gen)[:, 0]
                edge = bits.gather(1, choice[:, None])[:, 0]
                pick = choice.numpy()
                draws += len(sel)
                fillers[rows] = fillers[rows] + lat.edge_chars[p, pick]
            if len(rows) == n:
                costs += edge
            else:
                costs[torch.from_numpy(rows)] += edge
            if shown and rows[0] < shown:
                edge_l = edge.tolist()
                for j in range(int(np.searchsorted(rows, shown))):
                    i, a, parent = int(rows[j]), int(pick[j]), names[int(rows[j])]
                    if not forced:
                        before = drawn[i]
                        drawn[i] = before + edge_l[j]
                        entries.append((node(parent, root + before),
                                        lat.child(parent, p, a, edge_l[j], root + drawn[i])))
                    names[i] = lat.name(parent, p, a)
            tokens[sel] = e.ids[pick]
            pos[rows] = e.nxt[pick]
            cont[sel] = ~e.term[pick]
        if entries:
            log.append(entries)
        if not cont.any():
            break
        keep = np.flatnonzero(cont)
        if len(keep) < len(live):
            state = counter.select_state(state, torch.from_numpy(keep))
        log_probs, state = counter.step(torch.from_numpy(tokens[keep]), state)
        live = live[keep]
    return [None if d else f for f, d in zip(fillers.tolist(), dead.tolist())], costs.numpy(), draws, log


def sample(model: LanguageModel, template, *, top_k: int = 1, options: SearchOptions | None = None,
           **kwargs) -> ExtractionResult:
    """The best distinct fillers among ``samples`` drawn from the model (seeded).

    Options (keywords or ``options``): ``samples`` (10,000), ``seed`` (0),
    ``chunk_size`` (4,096 draws per batch), ``max_seconds``, ``trace``,
    ``max_trace_steps``, ``max_trace_children``, ``progress``, ``stop``.
    """
    opts = SearchOptions.from_kwargs("sample", kwargs, options)
    check_positive("top_k", top_k)
    deadline = Deadline(opts.max_seconds, opts.stop)
    counter = CountingModel(model)
    lat = Lattice(counter, template)
    samples, chunk = int(opts.samples), int(opts.chunk_size)
    # the distinct fillers drawn are all kept (a dict entry each), and one batch of rows is stepped at once
    ensure_memory(min(samples, lat.template.space_size) * (lat.template.filler_length + 120)
                  + min(chunk, samples) * counter.row_bytes(lat.max_units),
                  f"{samples:,} samples", "draw fewer samples")
    recorder = recorder_for(opts, "sampling", lat)
    gen = torch.Generator().manual_seed(int(opts.seed))
    best: dict[str, float] = {}
    completions = Completions(lat)
    done = nodes = 0
    why = None
    with torch.inference_mode():
        while done < samples:
            why = deadline.why_not_continue()
            if why is not None:
                break
            n = min(chunk, samples - done)
            shown = recorder.max_children if recorder is not None else 0
            fillers, costs, draws, log = draw(counter, lat, n, gen, shown)
            nodes += draws
            for f, c in zip(fillers, costs.tolist()):
                if f is not None:
                    completions.add(c, f)
            for c, f in completions.flush():
                if c < best.get(f, float("inf")):
                    best[f] = c
            if recorder is not None:
                found = [found_entry(f, c if lat.exact else best[f])
                         for f, c in zip(fillers[:shown], costs[:shown].tolist()) if f is not None]
                record_batch(recorder, log, found, n, n > shown)
            done += n
            if opts.progress is not None:
                opts.progress(done, samples)
    result = make_result("sampling", [(c, f) for f, c in best.items()], int(top_k), nodes=nodes, counter=counter,
                         started=deadline.started, complete=why is None,
                         message=f"{why} after {done:,} of {samples:,} samples" if why else "")
    if recorder is not None:
        result.trace = recorder.finish(result)
    return result


def record_batch(recorder, log: list, found: list[dict], batch: int, capped: bool) -> None:
    """One trace step per position with a choice: the first samples' partial fillers and the unit each drew."""
    if capped:
        recorder.trace["capped"] = True
    for k, entries in enumerate(log):
        if recorder.full:
            recorder.step([], [], 0, [])
            return
        recorder.step([e[0] for e in entries], [e[1] for e in entries], batch, found if k == len(log) - 1 else [])
