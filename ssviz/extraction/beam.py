"""Beam search, faithful to the paper's section 5.3: it can miss the secret, and that is the lesson.

The beam starts as the empty filler. At each slot character every beam member
is extended with every character of the slot's alphabet and only the
``beam_width`` cheapest extensions are kept (cost so far, literals forced
after the character are added once it is kept, as in the paper's per-position
sets). A prefix of the secret that is not among the best prefixes is lost for
good, even when the complete secret is the most likely filler of all.
"""

from __future__ import annotations

import torch

from ssviz.extraction.result import ExtractionResult, make_result
from ssviz.extraction.space import is_token_model, start_run
from ssviz.extraction.trace import (
    DEFAULT_MAX_CHILDREN,
    DEFAULT_MAX_STEPS,
    child,
    found_entry,
    node,
    recorder_for,
)
from ssviz.memory import ensure_memory
from ssviz.models.base import LanguageModel, state_nbytes


def beam_search(model: LanguageModel, template, *, beam_width: int = 1000, top_k: int = 1,
                max_seconds: float | None = None, trace: bool = False, max_trace_steps: int = DEFAULT_MAX_STEPS,
                max_trace_children: int = DEFAULT_MAX_CHILDREN, progress=None, stop=None) -> ExtractionResult:
    """The best complete fillers left in a beam of ``beam_width`` partial fillers.

    Ties between extensions keep the earlier one (beam order, then alphabet
    order). Stopped or out of time before the last slot: no complete filler,
    ``complete=False``. A transformer is searched over tokens
    (:func:`~ssviz.extraction.token_search.token_beam`).
    """
    deadline, counter, space = start_run(model, template, max_seconds, stop, beam_width=beam_width, top_k=top_k)
    if is_token_model(model):
        from ssviz.extraction.token_search import token_beam
        recorder = recorder_for(trace, "beam", space, max_trace_steps, max_trace_children)
        result = token_beam(counter, space, deadline, beam_width=beam_width, top_k=top_k, recorder=recorder,
                            progress=progress)
        if recorder is not None:
            result.trace = recorder.finish(result)
        return result
    width = max(len(a) for a in space.alphabets)
    rows = min(int(beam_width), space.template.space_size)
    ensure_memory(rows * (width * 24 + state_nbytes(model.initial_state(1)) + 100 + space.depth),
                  f"a beam of {int(beam_width):,}", "use a smaller beam width")
    recorder = recorder_for(trace, "beam", space, max_trace_steps, max_trace_children)
    fillers = [""]
    costs = torch.tensor([space.prefix_bits], dtype=torch.float64)
    log_probs, state = space.ctx.log_probs, space.ctx.state
    nodes = 0
    with torch.inference_mode():
        for k, alphabet in enumerate(space.alphabets):
            why = deadline.why_not_continue()
            if why is not None:
                return make_result("beam", [], int(top_k), nodes=nodes, counter=counter, started=deadline.started,
                                   complete=False, message=f"{why} at slot character {k + 1} of {space.depth}")
            edges = space.edge_bits(log_probs, k)                      # [n, A]
            cand = (costs[:, None] + edges).reshape(-1)
            keep = torch.argsort(cand, stable=True)[:int(beam_width)]
            width = len(alphabet)
            parents, chars = keep // width, keep % width
            nodes += len(fillers)
            if recorder is not None and not recorder.full:
                kept = set(keep.tolist())
                kids = [child(fillers[i // width] + alphabet[i % width], e, c, i in kept)
                        for i, (e, c) in enumerate(zip(edges.reshape(-1).tolist(), cand.tolist()))]
                kids.sort(key=lambda d: d["cost"])
                expanded = [node(f, c) for f, c in zip(fillers, costs.tolist())]
            fillers = [fillers[p] + alphabet[c] for p, c in zip(parents.tolist(), chars.tolist())]
            costs = cand[keep]
            last = k == space.depth - 1
            if not (last and not space.literals_after[k]):
                tokens = torch.from_numpy(space.slot_tokens[k])[chars]
                log_probs, state = counter.step(tokens, counter.select_state(state, parents))
                costs, log_probs, state = space.force_literals(counter, k, costs, log_probs, state,
                                                               need_state=not last)
            if recorder is not None:
                if recorder.full:
                    recorder.step([], [], 0, [])
                else:
                    found = sorted(zip(costs.tolist(), fillers))[:max_trace_children] if last else []
                    recorder.step(expanded, kids, len(fillers), [found_entry(f, c) for c, f in found])
            if progress is not None:
                progress(k + 1, space.depth)
    result = make_result("beam", list(zip(costs.tolist(), fillers)), int(top_k), nodes=nodes, counter=counter,
                         started=deadline.started)
    if recorder is not None:
        result.trace = recorder.finish(result)
    return result
