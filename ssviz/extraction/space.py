"""The tree every extraction algorithm walks, seen through the model interface.

A node is a partial filler: the slot characters chosen so far. Literal
characters between slots are forced, so each slot character is followed by a
fixed (possibly empty) run of literal tokens; :class:`SearchSpace` precomputes
those runs and each slot's alphabet as vocabulary ids, once per template.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ssviz.models.base import LanguageModel, State, check_finite
from ssviz.scoring import LN2, PrefixContext, prefix_context, score_digits
from ssviz.templates import Template, as_template


class CountingModel(LanguageModel):
    """Wraps a model and counts its work: ``reads`` characters and ``calls`` batched invocations.

    Counting at the interface makes ``model_steps`` exact for every algorithm
    (including the scorer's trie walk used by brute force) at the cost of one
    Python call per batched step.
    """

    # what token scoring and token search read from a transformer, passed through when the model has it
    FORWARDED = ("tokenizer", "token_level", "row_bytes", "max_positions")

    def __init__(self, model: LanguageModel):
        self.inner = model
        self.vocab = model.vocab
        self.reads = 0
        self.calls = 0
        for name in self.FORWARDED:
            if hasattr(model, name):
                setattr(self, name, getattr(model, name))

    def initial_state(self, batch_size: int) -> State:
        return self.inner.initial_state(batch_size)

    def step(self, tokens: torch.Tensor, state: State):
        self.reads += int(tokens.numel())
        self.calls += 1
        log_probs, state = self.inner.step(tokens, state)
        return check_finite(log_probs, self.inner), state

    def run(self, tokens: torch.Tensor, state: State):
        self.reads += int(tokens.numel())
        self.calls += 1
        log_probs, state = self.inner.run(tokens, state)
        return check_finite(log_probs, self.inner), state

    def select_state(self, state: State, index: torch.Tensor) -> State:
        return self.inner.select_state(state, index)

    @property
    def description(self) -> dict:
        return self.inner.description


@dataclass
class SearchSpace:
    """A template compiled against a model's vocabulary, with its prefix already read.

    ``alphabets[k]`` are slot ``k``'s characters and ``slot_tokens[k]`` their ids;
    ``literals_after[k]`` the ids of the literal characters forced right after slot
    character ``k`` (trailing literals after the last one included).
    """

    template: Template
    ctx: PrefixContext
    alphabets: list[str]
    slot_tokens: list[np.ndarray]
    literals_after: list[list[int]]

    @classmethod
    def build(cls, model: LanguageModel, template) -> SearchSpace:
        template = as_template(template)
        ctx = prefix_context(model, template)  # checks the vocabulary
        enc = model.vocab.encode
        slot_pos = list(template.slot_positions) + [len(template.positions)]
        literals = [enc("".join(template.positions[p + 1:slot_pos[k + 1]]))
                    for k, p in enumerate(template.slot_positions)]
        return cls(template, ctx, list(template.filler_alphabets),
                   [np.array(enc(a), dtype=np.int64) for a in template.filler_alphabets], literals)

    @property
    def depth(self) -> int:
        """Number of slot characters in a complete filler."""
        return len(self.alphabets)

    @property
    def prefix_bits(self) -> float:
        return float(self.ctx.bits)

    def score(self, model: LanguageModel, digits: np.ndarray) -> np.ndarray:
        """Log-perplexity of fillers given as alphabet offsets (lexicographically sorted), by the trie scorer."""
        return score_digits(model, self.template, digits, presorted=True, ctx=self.ctx)

    def root_state(self, model: LanguageModel, n: int) -> tuple[State, torch.Tensor]:
        """``n`` copies of the post-prefix state and next-character log-probs."""
        index = torch.zeros(n, dtype=torch.long)
        return model.select_state(self.ctx.state, index), self.ctx.log_probs.expand(n, -1)

    def edge_bits(self, log_probs: torch.Tensor, k: int) -> torch.Tensor:
        """``[n, |alphabet k|]`` float64 edge weights -log2 P(c | node) for slot ``k``'s characters."""
        return -log_probs[:, torch.from_numpy(self.slot_tokens[k])].double() / LN2

    def force_literals(self, model: LanguageModel, k: int, costs: torch.Tensor, log_probs: torch.Tensor,
                       state: State, need_state: bool) -> tuple[torch.Tensor, torch.Tensor, State]:
        """Add the cost of the literals forced after slot character ``k``; step through them.

        ``log_probs``/``state`` are taken right after reading slot character ``k``.
        The last literal is only read when ``need_state`` (a following slot needs
        its distribution); a complete filler only needs the literal's cost.
        """
        lits = self.literals_after[k]
        n = len(costs)
        for j, tok in enumerate(lits):
            costs = costs - log_probs[:, tok].double() / LN2
            if j == len(lits) - 1 and not need_state:
                break
            log_probs, state = model.step(torch.full((n,), tok, dtype=torch.long), state)
        return costs, log_probs, state


def is_token_model(model: LanguageModel) -> bool:
    """Whether ``model`` reads tokens of whole texts (a transformer) rather than characters."""
    return bool(getattr(model, "token_level", False))


def build_space(model: LanguageModel, template):
    """The model's search space: characters (:class:`SearchSpace`) or token paths (:class:`TokenLattice`)."""
    if is_token_model(model):
        from ssviz.extraction.lattice import TokenLattice
        return TokenLattice(model, template)
    return SearchSpace.build(model, template)


def start_run(model: LanguageModel, template, max_seconds: float | None, stop, **positive):
    """What every algorithm does first: check its counts, start the clock, wrap the model, read the prefix.

    Returns ``(deadline, counting_model, space)``; ``space`` is a :class:`TokenLattice` for a transformer.
    """
    from ssviz.extraction.result import Deadline, check_positive
    for name, value in positive.items():
        check_positive(name, value)
    deadline = Deadline(max_seconds, stop)
    counter = CountingModel(model)
    return deadline, counter, build_space(counter, template)
