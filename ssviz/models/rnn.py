"""Character-level LSTM and GRU language models (the paper's section 4 model)."""

from __future__ import annotations

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
