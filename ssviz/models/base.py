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

from ssviz.errors import NonFiniteError, SsvizError, VocabularyError
from ssviz.messages import clip

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
    finite = log_probs.all_finite() if hasattr(log_probs, "all_finite") else bool(torch.isfinite(log_probs).all())
    if not finite:
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

    # --- placement: where the weights live and in which precision ------------------------------------
    def _weights(self) -> "torch.nn.Module | None":
        """The module holding the weights (None for a model that keeps them where ssviz cannot see)."""
        try:
            return self.training_module()
        except SsvizError:
            return None

    @property
    def device(self) -> torch.device:
        """Where the weights live: every tensor a computation makes for this model goes there."""
        from ssviz.models.placement import module_placement
        w = self._weights()
        return module_placement(w)[0] if w is not None else torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """The weights' precision (log-probabilities are float32 whatever it is)."""
        from ssviz.models.placement import module_placement
        w = self._weights()
        return module_placement(w)[1] if w is not None else torch.float32

    def place(self, device="auto", dtype="auto") -> "LanguageModel":
        """Move the weights to ``device`` in ``dtype`` (names as :mod:`ssviz.models.placement` resolves them),
        in place; returns the model."""
        from ssviz.models.placement import PlacementError, resolve
        dev, dt = resolve(device, dtype)
        w = self._weights()
        if w is None:
            if (dev.type, dt) != ("cpu", torch.float32):
                raise PlacementError(f"{clip(model_name(self), 100)} cannot be moved: it runs on the CPU in float32")
            return self
        w.to(device=dev, dtype=dt)
        self.placed()
        return self

    def placed(self) -> None:
        """The weights moved: forget what was derived from them (a stepper's tables, a cached placement)."""

    @property
    def description(self) -> dict:
        """A short summary for people (architecture, sizes)."""
        return {"arch": type(self).__name__, "vocab_size": len(self.vocab)}

    @property
    def parameter_count(self) -> int:
        """How many weights the model has (0 when it keeps them where ssviz cannot see)."""
        return sum(p.numel() for p in self.parameters()) if isinstance(self, torch.nn.Module) else 0

    @property
    def facts(self) -> list[tuple[str, str]]:
        """``(label, value)`` pairs that describe the model to people (the Model page's header)."""
        return [("Architecture", str(self.description.get("arch", type(self).__name__))),
                ("Vocabulary", f"{len(self.vocab):,} {self.unit_name}s")]

    @property
    def reading(self) -> str:
        """How the model reads a text, in one sentence for people."""
        u = self.unit_name
        return (f"The model scores a text {u} by {u}: the first {u} is context, every other costs "
                f"-log2 P({u} | the {u}s before it).")

    # --- units: what a text is to this model (defaults: one unit per character of ``vocab``) ------------
    unit_name = "character"  # what one unit is called in messages and on pages
    max_positions: int | None = None  # the longest text the model reads, in units (None: unbounded)

    def encode(self, text: str) -> list[int]:
        """The unit ids of ``text`` under the scoring semantics (the first unit is context)."""
        return self.vocab.encode(text)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: Sequence[int]) -> str:
        return self.vocab.decode(ids)

    def unit_texts(self) -> list[str | None]:
        """The text each unit id spells on its own (None: a unit that spells no whole character)."""
        return list(self.vocab.chars)

    def unit_text(self, unit: int) -> str:
        """How a unit is shown to people."""
        return self.vocab.chars[int(unit)]

    def template_units(self, template):
        """``template`` read in this model's units (:class:`~ssviz.models.units.TemplateUnits`)."""
        from ssviz.models.units import TemplateUnits
        return TemplateUnits(template, self)

    # --- speed: how this model is stepped over a trie, and what a row costs --------------------------
    def trie_stepper(self) -> "TrieStepper":
        """What the trie scorer steps nodes with; models with a faster way to step many children of
        one parent override it (the same numbers up to float rounding)."""
        return TrieStepper(self)

    def row_bytes(self, length: int, steps: int = 1) -> int:
        """Rough bytes one row needs after ``length`` units plus ``steps`` rows of log-probabilities:
        scorers and searches size their batches with it."""
        return state_nbytes(self.initial_state(1)) + 3 * 4 * len(self.vocab) * steps + 24 * length

    # --- search state pool -------------------------------------------------------------------
    def state_pool(self, max_bytes: int):
        """Where best-first search keeps the states of expanded nodes, within ``max_bytes``: a model whose
        states cannot all be joined into one batch (a transformer's caches) brings its own pool."""
        from ssviz.models.pool import StatePool
        return StatePool(self, max_bytes)


    # --- training ---
    # What ssviz.train asks of a model it trains, so that training never asks what kind of model it has.
    # A model that only scores (the members above) needs none of these.
    training_archs: tuple[str, ...] = ()  # the TrainConfig archs that describe a model of this kind
    kind_name = "language model"  # how messages name this kind of model

    def training_module(self) -> "torch.nn.Module":
        """The torch module holding the weights: what an optimizer updates, a state dict saves and restores."""
        from ssviz.errors import SsvizError
        raise SsvizError(f"{clip(model_name(self), 100)} has no weights ssviz can train")

    def encode_corpus(self, text: str) -> list[int]:
        """Unit ids of a training text, in the order training windows cut them (one per character here)."""
        return self.vocab.encode(text)

    def training_forward(self, p: float, generator: torch.Generator,
                         module: "torch.nn.Module | None" = None) -> "torch.nn.Module":
        """Training-time forward ``tokens [B, T] -> logits [B, T, V]`` with dropout ``p`` drawn from
        ``generator`` (never torch's global RNG); ``module`` runs a copy of :meth:`training_module` instead
        (DP-SGD trains the copy :meth:`dp_module` makes)."""
        from ssviz.errors import SsvizError
        raise SsvizError(f"{clip(model_name(self), 100)} cannot be trained by ssviz")

    def make_optimizer(self, params, config) -> torch.optim.Optimizer:
        """RMSProp, as the paper trains its character models (its Table 8); ``config``: lr and weight decay."""
        return torch.optim.RMSprop(params, lr=config.lr, weight_decay=config.weight_decay)

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, T, V]`` of every position of ``tokens [B, T]``, read from the initial state (evaluation).

        Log-probabilities serve as logits here; models with a plain forward pass override it.
        """
        return self.run(tokens, self.initial_state(tokens.shape[0]))[0]

    def begin_training(self) -> None:
        """Make the weights trainable (a model frozen for inference thaws)."""

    def end_training(self, forward: "torch.nn.Module | None" = None) -> None:
        """Training is over: release what :meth:`training_forward` attached to ``forward`` and leave the
        weights as inference expects them."""

    def dp_module(self) -> "torch.nn.Module":
        """A copy of :meth:`training_module` whose per-example gradients Opacus can compute, holding the same
        weights, in the mode DP-SGD starts from (:func:`ssviz.defenses.dp.dp_module` checks it)."""
        from ssviz.errors import SsvizError
        raise SsvizError(f"DP training cannot handle this model: {clip(model_name(self), 100)} has no trainable "
                         f"module")

    @torch.no_grad()
    def load_training_weights(self, module: "torch.nn.Module") -> None:
        """Take the weights of a trained copy of :meth:`training_module` (DP-SGD trains the :meth:`dp_module` copy)."""
        self.training_module().load_state_dict(module.state_dict())

    def save(self, path, extra: dict | None = None) -> "Path":
        """Write the model where :func:`ssviz.models.load_model` reads it back, with ``extra`` (training
        metadata) beside the weights; returns where it went."""
        from ssviz.errors import SsvizError
        raise SsvizError(f"{clip(model_name(self), 100)} cannot be saved by ssviz")


class TrieStepper:
    """Steps trie nodes with any :class:`LanguageModel`: a child's state is its parent's, selected, then stepped.

    ``root`` turns a model state into the stepper's own; ``children`` and ``run``
    take a block state and the parent row of each child (``local``; None: child
    ``i`` of parent ``i``). ``rows`` is the block size it steps best at (None: as many as
    memory allows); a 2x200 LSTM runs ~1.3x faster per row at 1,024 rows than at 4,096 (its
    gate tensors stay in cache), and below ~256 per-call overhead dominates.
    """

    def __init__(self, model: LanguageModel, rows: int | None = 1024):
        self.model = model
        self.rows = rows

    def root(self, state: State):
        return state

    def children(self, state, local: torch.Tensor | None, tok: torch.Tensor,
                 keep: bool = True) -> tuple[torch.Tensor, object]:
        """Log-probabilities and state after each child reads ``tok`` (``keep=False``: the state will not be
        stepped again, a stepper may return None for it). The log-probabilities may be any object that
        answers ``[rows, units]`` (and ``all_finite()`` when it is not a tensor)."""
        if local is not None:
            state = self.model.select_state(state, local)
        return self.model.step(tok, state)

    def run(self, state, local: torch.Tensor | None, tokens: torch.Tensor) -> torch.Tensor:
        """Log-probabilities ``[B, T, V]`` along ``tokens [B, T]`` from the selected parents."""
        if local is not None:
            state = self.model.select_state(state, local)
        return self.model.run(tokens, state)[0]
