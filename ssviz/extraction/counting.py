"""A model wrapper that counts the work a search asks of the model (``model_steps``, ``model_calls``)."""

from __future__ import annotations

import weakref
from functools import cached_property
from typing import Sequence

import torch

from ssviz.models.base import LanguageModel, State, TrieStepper, check_finite


class CountingModel(LanguageModel):
    """Wraps a model and counts its work: ``reads`` units and ``calls`` batched invocations.

    Counting at the interface makes ``model_steps`` exact for every algorithm
    (including the trie scorer used by brute force and canonical re-scoring) at the
    cost of one Python call per batched step. Every other member of the interface is
    passed to the wrapped model by name here: inherited, the base class's character
    defaults would silently replace a transformer's own.
    """

    def __init__(self, model: LanguageModel):
        self.inner = model
        self.vocab = model.vocab
        self.reads = 0
        self.calls = 0

    # --- stepping: counted -------------------------------------------------------------------
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

    def trie_stepper(self) -> TrieStepper:
        """The wrapped model's own stepper (an LSTM's shares work between the children of a node), with
        every step it takes counted as the model's."""
        return CountingStepper(self)

    # --- everything else: the wrapped model's own ------------------------------------------------
    @property
    def device(self):
        return self.inner.device

    @property
    def dtype(self):
        return self.inner.dtype

    @property
    def description(self) -> dict:
        return self.inner.description

    @property
    def unit_name(self) -> str:
        return self.inner.unit_name

    @property
    def max_positions(self) -> int | None:
        return self.inner.max_positions

    def encode(self, text: str) -> list[int]:
        return self.inner.encode(text)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self.inner.encode_batch(texts)

    def decode(self, ids: Sequence[int]) -> str:
        return self.inner.decode(ids)

    def unit_texts(self) -> list[str | None]:
        return self.inner.unit_texts()

    def unit_text(self, unit: int) -> str:
        return self.inner.unit_text(unit)

    def template_units(self, template):
        return self.inner.template_units(template)

    def row_bytes(self, length: int, steps: int = 1) -> int:
        return self.inner.row_bytes(length, steps)

    def state_pool(self, max_bytes: int):
        return self.inner.state_pool(max_bytes)


class CountingStepper(TrieStepper):
    """A model's trie stepper whose steps are counted by a :class:`CountingModel` (same numbers, same counts
    as the generic stepper over the wrapper: one read per unit stepped, one call per block).

    The wrapped stepper is built on first use: a search's lattice reads only its root
    context with the scorer, and an LSTM's stepper costs a few matrix products to build.
    """

    def __init__(self, counter: CountingModel):
        super().__init__(counter, rows=block_rows(counter.inner))

    @cached_property
    def inner(self) -> TrieStepper:
        return self.model.inner.trie_stepper()

    def root(self, state: State):
        return self.inner.root(state)

    def children(self, state, local: torch.Tensor | None, tok: torch.Tensor, keep: bool = True):
        self.model.reads += int(tok.numel())
        self.model.calls += 1
        log_probs, state = self.inner.children(state, local, tok, keep)
        return check_finite(log_probs, self.model.inner), state

    def run(self, state, local: torch.Tensor | None, tokens: torch.Tensor) -> torch.Tensor:
        self.model.reads += int(tokens.numel())
        self.model.calls += 1
        return check_finite(self.inner.run(state, local, tokens), self.model.inner)


_ROWS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def block_rows(model: LanguageModel) -> int | None:
    """The block size ``model``'s trie stepper steps best at, asked once per model (a sizing hint only)."""
    try:
        return _ROWS[model]
    except (KeyError, TypeError):
        pass
    rows = model.trie_stepper().rows
    try:
        _ROWS[model] = rows
    except TypeError:  # a model that takes no weak reference: asked every time
        pass
    return rows
