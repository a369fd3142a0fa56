"""The one model interface every computation in ssviz goes through.

Scoring, sampling, beam search and shortest-path search only need to run a
model one token at a time from a known state, on a batch of independent
sequences. A new architecture (CNN, transformer, word-level) implements
:class:`LanguageModel` and everything else works unchanged.

Shapes: ``B`` batch, ``T`` time steps, ``V`` vocabulary size.
Log-probabilities are natural logs (``torch.log_softmax``); callers that report
bits divide by ``ln 2``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Sequence

import torch

from ssviz.errors import NonFiniteError, VocabularyError, clip

State = Any  # opaque to callers; only the model that made it reads it


class Vocab:
    """Characters and their token ids (position in the list = id)."""

    def __init__(self, chars: Sequence[str]):
        chars = list(chars)
        bad = [c for c in chars if not isinstance(c, str) or len(c) != 1]
        if bad:
            raise VocabularyError(f"vocabulary entries must be single characters, got {clip(repr(bad[:3]), 80)}")
        if len(set(chars)) != len(chars):
            seen: set[str] = set()
            dup = sorted({c for c in chars if c in seen or seen.add(c)})  # linear: vocabularies can be huge
            raise VocabularyError(f"vocabulary has {len(dup)} duplicate character(s): {clip(repr(dup), 80)}")
        self.chars = chars
        self.index = {c: i for i, c in enumerate(chars)}

    def __len__(self) -> int:
        return len(self.chars)

    def __contains__(self, char: str) -> bool:
        return char in self.index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and other.chars == self.chars

    def missing(self, text: str) -> list[str]:
        """Characters of ``text`` outside the vocabulary, in order of first appearance."""
        return list(dict.fromkeys(c for c in text if c not in self.index))

    def encode(self, text: str) -> list[int]:
        try:
            return [self.index[c] for c in text]
        except KeyError:
            missing = self.missing(text)
            pos = next(i for i, c in enumerate(text) if c in missing)
            raise VocabularyError(
                f"character {missing[0]!r} (at position {pos} of a {len(text)}-character text) is not in the "
                f"model's vocabulary" + (f"; {len(missing) - 1} more missing: {clip(repr(missing[1:]), 60)}"
                                         if len(missing) > 1 else "")
            ) from None

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.chars[int(i)] for i in ids)


def model_name(model) -> str:
    """How messages name a model: the file it came from, else its class."""
    inner = getattr(model, "inner", model)  # wrappers such as the extraction's CountingModel
    return str(getattr(inner, "source", None) or type(inner).__name__)


def check_finite(log_probs: torch.Tensor, model) -> torch.Tensor:
    """``log_probs`` unchanged, or :class:`NonFiniteError` naming the model.

    A model whose outputs are NaN or infinite (e.g. finite but huge weights) would
    otherwise give NaN scores, arbitrary extraction results and a broken fit.
    """
    if not bool(torch.isfinite(log_probs).all()):
        raise NonFiniteError(f"model {clip(model_name(model), 100)} gives NaN or infinite log-probabilities: "
                             "its weights are unusable (retrain it, or check the file)")
    return log_probs


def state_nbytes(state: State) -> int:
    """Bytes held by the tensors of a state (for memory estimates before a search allocates rows).

    States that know their own size (a transformer's ``KVState``) say so through ``nbytes``.
    """
    if isinstance(getattr(state, "nbytes", None), int):
        return state.nbytes
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, (tuple, list)):
        return sum(state_nbytes(s) for s in state)
    if isinstance(state, dict):
        return sum(state_nbytes(s) for s in state.values())
    return 0


class LanguageModel(ABC):
    """A next-token model stepped incrementally on a batch.

    The first token of a text is context only: the model starts from
    ``initial_state`` and ``step(x_1)`` returns the distribution of ``x_2``.
    """

    vocab: Vocab

    @abstractmethod
    def initial_state(self, batch_size: int) -> State:
        """The state before any token has been read (the zero state for RNNs)."""

    @abstractmethod
    def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Read one token per sequence.

        tokens: ``[B]`` long. Returns ``(log_probs [B, V], new_state)`` where
        ``log_probs[b]`` is the distribution of the token that follows.
        """

    @abstractmethod
    def select_state(self, state: State, index: torch.Tensor) -> State:
        """Rows ``index`` (``[K]`` long, repeats allowed) of a batch state: a state for K sequences."""

    def run(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Read ``tokens [B, T]``; returns ``(log_probs [B, T, V], state)``.

        Same as T calls to :meth:`step`; models override it with a faster fused version.
        """
        outs = []
        for t in range(tokens.shape[1]):
            lp, state = self.step(tokens[:, t], state)
            outs.append(lp)
        return torch.stack(outs, dim=1), state

    @property
    def description(self) -> dict:
        """A short summary for people (architecture, sizes)."""
        return {"arch": type(self).__name__, "vocab_size": len(self.vocab)}
