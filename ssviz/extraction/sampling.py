"""Generative sampling (the paper's section 5.2): let the model write the slots, keep the best.

Each slot character is drawn from the model's next-character distribution
restricted to the slot's alphabet (renormalized); literals are forced. A
filler's cost is its true log-perplexity (the unrestricted probabilities), so
sampled fillers rank exactly as the scorer ranks them. ``samples`` draws run in
batches of ``chunk_size``; a seeded ``torch.Generator`` makes runs reproducible.
"""

from __future__ import annotations

import numpy as np
import torch

from ssviz.extraction.result import ExtractionResult, make_result
from ssviz.extraction.space import SearchSpace, is_token_model, start_run
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

DEFAULT_CHUNK = 4096


def _draw(counter, space: SearchSpace, n: int, gen: torch.Generator):
    """``n`` fillers as alphabet offsets ``[n, F]`` with their costs and per-character edges."""
    state, log_probs = space.root_state(counter, n)
    costs = torch.full((n,), space.prefix_bits, dtype=torch.float64)
    picks = np.empty((n, space.depth), dtype=np.int64)
    edges = np.empty((n, space.depth))
    for k in range(space.depth):
        restricted = torch.log_softmax(log_probs[:, torch.from_numpy(space.slot_tokens[k])].double(), dim=1)
        choice = torch.multinomial(restricted.exp(), 1, generator=gen)[:, 0]
        tokens = torch.from_numpy(space.slot_tokens[k])[choice]
        edge = space.edge_bits(log_probs, k).gather(1, choice[:, None])[:, 0]
        costs = costs + edge
        picks[:, k], edges[:, k] = choice.numpy(), edge.numpy()
        last = k == space.depth - 1
        if not (last and not space.literals_after[k]):
            log_probs, state = counter.step(tokens, state)
            costs, log_probs, state = space.force_literals(counter, k, costs, log_probs, state, need_state=not last)
    return picks, costs.numpy(), edges


def sample(model: LanguageModel, template, *, samples: int = 10_000, seed: int = 0, top_k: int = 1,
           chunk_size: int = DEFAULT_CHUNK, max_seconds: float | None = None, trace: bool = False,
           max_trace_steps: int = DEFAULT_MAX_STEPS, max_trace_children: int = DEFAULT_MAX_CHILDREN,
           progress=None, stop=None) -> ExtractionResult:
    """The best distinct fillers among ``samples`` drawn from the model (seeded).

    A transformer draws token paths (:func:`~ssviz.extraction.token_search.token_sample`).
    """
    deadline, counter, space = start_run(model, template, max_seconds, stop, samples=samples, top_k=top_k,
                                         chunk_size=chunk_size)
    if is_token_model(model):
        from ssviz.extraction.token_search import token_sample
        recorder = recorder_for(trace, "sampling", space, max_trace_steps, max_trace_children)
        result = token_sample(counter, space, deadline, samples=samples, seed=seed, top_k=top_k,
                              chunk_size=chunk_size, recorder=recorder, progress=progress)
        if recorder is not None:
            result.trace = recorder.finish(result)
        return result
    # the distinct fillers drawn are all kept (a dict entry each)
    ensure_memory(min(int(samples), space.template.space_size) * (space.depth + 120), f"{int(samples):,} samples",
                  "draw fewer samples")
    recorder = recorder_for(trace, "sampling", space, max_trace_steps, max_trace_children)
    gen = torch.Generator().manual_seed(int(seed))
    best: dict[str, float] = {}
    done, why = 0, None
    with torch.inference_mode():
        while done < samples:
            why = deadline.why_not_continue()
            if why is not None:
                break
            n = min(int(chunk_size), samples - done)
            picks, costs, edges = _draw(counter, space, n, gen)
            fillers = space.template.digits_to_fillers(picks)
            for f, c in zip(fillers, costs.tolist()):
                if c < best.get(f, float("inf")):
                    best[f] = c
            if recorder is not None:
                _record_chunk(recorder, fillers, costs, edges, space.prefix_bits)
            done += n
            if progress is not None:
                progress(done, samples)
    result = make_result("sampling", [(c, f) for f, c in best.items()], int(top_k), nodes=done * space.depth,
                         counter=counter, started=deadline.started, complete=why is None,
                         message=f"{why} after {done:,} of {samples:,} samples" if why else "")
    if recorder is not None:
        result.trace = recorder.finish(result)
    return result


def _record_chunk(recorder, fillers: list[str], costs: np.ndarray, edges: np.ndarray, prefix_bits: float) -> None:
    """One trace step per slot character: the first samples' partial fillers and the character each drew."""
    shown = fillers[:recorder.max_children]
    if len(fillers) > len(shown):
        recorder.trace["capped"] = True
    partial = prefix_bits + np.cumsum(edges[:len(shown)], axis=1)  # cost before forced literals
    depth = edges.shape[1]
    for k in range(depth):
        if recorder.full:
            recorder.step([], [], 0, [])
            return
        before = partial[:, k - 1] if k else np.full(len(shown), prefix_bits)
        expanded = [node(f[:k], c) for f, c in zip(shown, before.tolist())]
        kids = [child(f[:k + 1], e, c) for f, e, c in zip(shown, edges[:len(shown), k].tolist(),
                                                           partial[:, k].tolist())]
        found = [found_entry(f, c) for f, c in zip(shown, costs.tolist())] if k == depth - 1 else []
        recorder.step(expanded, kids, len(fillers), found)
