"""Character-level LSTM and GRU language models (the paper's section 4 model)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ssviz.models.base import LanguageModel, State, Vocab

ARCHS = {"lstm": nn.LSTM, "gru": nn.GRU}


class CharRNN(nn.Module, LanguageModel):
    """Embedding -> LSTM/GRU (batch_first) -> Linear head, named as in the checkpoint format."""

    def __init__(self, vocab: Vocab | list[str], arch: str = "lstm", embedding_dim: int = 64,
                 hidden_size: int = 200, num_layers: int = 2, dropout: float = 0.0):
        nn.Module.__init__(self)
        self.vocab = vocab if isinstance(vocab, Vocab) else Vocab(vocab)
        self.arch = arch
        self.embedding_dim = embedding_dim
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.dropout = dropout
        self.embedding = nn.Embedding(len(self.vocab), embedding_dim)
        self.rnn = ARCHS[arch](embedding_dim, hidden_size, num_layers=num_layers, batch_first=True,
                               dropout=dropout if num_layers > 1 else 0.0)
        self.head = nn.Linear(hidden_size, len(self.vocab))

    @classmethod
    def from_config(cls, vocab: Vocab | list[str], config, *, seed: int | None = None) -> "CharRNN":
        """The model a training config describes (``arch``, ``layers``, ``hidden``, ``embedding_dim``,
        ``dropout``), initialized from ``seed`` (default ``config.seed``) without torch's global RNG."""
        model = cls(vocab, arch=config.arch, embedding_dim=config.embedding_dim, hidden_size=config.hidden,
                    num_layers=config.layers, dropout=config.dropout)
        model.reset_parameters(torch.Generator().manual_seed(int(config.seed if seed is None else seed)))
        return model

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator) -> None:
        """torch's default initialization, drawn from ``generator``.

        Same distributions and order as the constructors' own, so a seed gives the
        weights ``torch.manual_seed(seed)`` followed by the constructor would, but
        concurrent trainings (threads in the app) cannot disturb each other.
        """
        nn.init.normal_(self.embedding.weight, generator=generator)
        bound = 1 / math.sqrt(self.hidden_size)
        for p in self.rnn.parameters():
            nn.init.uniform_(p, -bound, bound, generator=generator)
        nn.init.kaiming_uniform_(self.head.weight, a=math.sqrt(5), generator=generator)
        nn.init.uniform_(self.head.bias, -bound, bound, generator=generator)

    @property
    def config(self) -> dict:
        return {"arch": self.arch, "vocab": list(self.vocab.chars), "embedding_dim": self.embedding_dim,
                "hidden_size": self.hidden_size, "num_layers": self.num_layers}

    @property
    def description(self) -> dict:
        return {"arch": self.arch.upper(), "layers": self.num_layers, "hidden_size": self.hidden_size,
                "embedding_dim": self.embedding_dim, "vocab_size": len(self.vocab),
                "parameters": sum(p.numel() for p in self.parameters())}

    def forward(self, tokens: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Logits ``[B, T, V]`` for training; ``state`` defaults to zeros."""
        out, state = self.rnn(self.embedding(tokens), state)
        return self.head(out), state

    # --- LanguageModel -------------------------------------------------------------
    def initial_state(self, batch_size: int) -> State:
        p = self.head.weight
        h = torch.zeros(self.num_layers, batch_size, self.hidden_size, dtype=p.dtype, device=p.device)
        return (h, h.clone()) if self.arch == "lstm" else h

    def run(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        logits, state = self.forward(tokens, state)
        return torch.log_softmax(logits, dim=-1), state

    def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        lp, state = self.run(tokens[:, None], state)
        return lp[:, 0], state

    def select_state(self, state: State, index: torch.Tensor) -> State:
        if isinstance(state, tuple):
            return tuple(s.index_select(1, index) for s in state)
        return state.index_select(1, index)


class GeneratorDropout(nn.Module):
    """Dropout whose masks come from a ``torch.Generator``, not torch's global RNG (reproducible in threads)."""

    def __init__(self, p: float, generator: torch.Generator):
        super().__init__()
        self.p, self.generator = float(p), generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p <= 0:
            return x
        keep = torch.empty_like(x).bernoulli_(1 - self.p, generator=self.generator)
        return x * keep / (1 - self.p)

    def __deepcopy__(self, memo):  # a copied module keeps drawing from the same seeded stream
        return GeneratorDropout(self.p, self.generator)


class TrainingForward(nn.Module):
    """A CharRNN's training-time forward: dropout on embeddings, between layers and on RNN outputs.

    CharRNN itself only drops between stacked layers, which does nothing for a
    1-layer model; dropping inputs and outputs as well (Zaremba et al.) makes the
    dropout defense real at every depth without changing the checkpoint. Every
    mask is drawn from ``generator``. ``model.rnn`` may be Opacus' DP layer
    (same interface); its between-layer dropout is switched to ``generator`` too.
    """

    def __init__(self, model: nn.Module, p: float, generator: torch.Generator):
        super().__init__()
        self.model = model
        self.drop = GeneratorDropout(p, generator)
        if getattr(model.rnn, "dropout_layer", None) is not None:  # Opacus DPLSTM / DPGRU
            model.rnn.dropout_layer = GeneratorDropout(model.rnn.dropout_layer.p, generator)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        m = self.model
        x = self.drop(m.embedding(tokens))
        if isinstance(m.rnn, nn.RNNBase) and m.rnn.num_layers > 1 and m.rnn.dropout > 0 and self.training:
            x = self._layer_by_layer(m.rnn, x)
        else:
            x = m.rnn(x)[0]
        return m.head(self.drop(x))

    def _layer_by_layer(self, rnn: nn.RNNBase, x: torch.Tensor) -> torch.Tensor:
        """nn.LSTM/GRU one layer at a time, so the between-layer dropout draws from the generator."""
        h0 = x.new_zeros(1, x.shape[0], rnn.hidden_size)
        between = GeneratorDropout(rnn.dropout, self.drop.generator)
        for k in range(rnn.num_layers):
            if k:
                x = between(x)
            params = [getattr(rnn, f"{n}_l{k}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            if isinstance(rnn, nn.LSTM):
                x = torch.lstm(x, (h0, h0), params, True, 1, 0.0, True, False, True)[0]
            else:
                x = torch.gru(x, h0, params, True, 1, 0.0, True, False, True)[0]
        return x
