"""Character-level LSTM and GRU language models (the paper's section 4 model)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ssviz.models.base import LanguageModel, State, TrieStepper, Vocab

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

    @property
    def facts(self) -> list[tuple[str, str]]:
        d = self.description
        return [("Architecture", d["arch"]), ("Layers x units", f"{d['layers']} x {d['hidden_size']}"),
                ("Embedding", str(d["embedding_dim"])), ("Parameters", f"{d['parameters']:,}"),
                ("Vocabulary", f"{d['vocab_size']} chars")]

    def forward(self, tokens: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Logits ``[B, T, V]`` for training; ``state`` defaults to zeros."""
        out, state = self.rnn(self.embedding(tokens.to(self.embedding.weight.device)), state)
        return self.head(out), state

    # --- LanguageModel -------------------------------------------------------------
    def initial_state(self, batch_size: int) -> State:
        p = self.head.weight
        h = torch.zeros(self.num_layers, batch_size, self.hidden_size, dtype=p.dtype, device=p.device)
        return (h, h.clone()) if self.arch == "lstm" else h

    def run(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        logits, state = self.forward(tokens, state)
        return torch.log_softmax(logits.float(), dim=-1), state  # float32 whatever the weights' precision

    def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        lp, state = self.run(tokens[:, None], state)
        return lp[:, 0], state

    def select_state(self, state: State, index: torch.Tensor) -> State:
        index = index.to(self.head.weight.device)
        if isinstance(state, tuple):
            return tuple(s.index_select(1, index) for s in state)
        return state.index_select(1, index)

    def trie_stepper(self) -> TrieStepper:
        # type(self): a subclass may step differently; only this exact model is known to the fast path
        if type(self) is CharRNN and LSTMTrieStepper.usable(self):
            return LSTMTrieStepper(self)
        return TrieStepper(self)


    # --- training ---
    training_archs = tuple(ARCHS)
    kind_name = "character RNN"

    def training_module(self) -> nn.Module:
        return self

    def training_forward(self, p: float, generator: torch.Generator, module: nn.Module | None = None) -> nn.Module:
        return TrainingForward(self if module is None else module, p, generator)

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        return self(tokens)[0]

    def dp_module(self) -> nn.Module:
        """Opacus' own fix: ``nn.LSTM``/``nn.GRU`` become ``DPLSTM``/``DPGRU`` (per-example gradients exist)."""
        from opacus.validators import ModuleValidator
        return ModuleValidator.fix(self).train(self.training)

    @torch.no_grad()
    def load_training_weights(self, module: nn.Module) -> None:
        """Part by part: Opacus' DP layers map torch's tensor names only on their own state dict."""
        for name in ("embedding", "rnn", "head"):
            state = {k: v.detach().clone() for k, v in getattr(module, name).state_dict().items()}
            getattr(self, name).load_state_dict(state)

    # writes the checkpoint format; set by ssviz.models.checkpoint, which sits above this module (it builds CharRNNs)
    writer = None

    def save(self, path, extra: dict | None = None):
        """A checkpoint file (:func:`~ssviz.models.checkpoint.save_checkpoint`)."""
        return CharRNN.writer(self, path, extra=extra)


class LSTMNodes:
    """A block of LSTM trie nodes: per layer ``h``, ``c`` ``[B, H]``, and (computed once, when the block has
    children) ``pre = h @ W_hh^T + b``, which all children of a node share."""

    __slots__ = ("h", "c", "pre")

    def __init__(self, h: list, c: list):
        self.h, self.c, self.pre = h, c, None


class LSTMTrieStepper(TrieStepper):
    """The trie scorer's fast path for a :class:`CharRNN` LSTM in eval mode (same numbers up to
    float rounding).

    Every child of a trie node starts from the same state, so the recurrent projection ``h @ W_hh^T`` of each
    layer is computed once per node, not once per child; the first layer's input projection is a lookup
    in a table over the vocabulary (its input is an embedding row); the gates are reordered (i, f, o, g) so
    one in-place sigmoid and one tanh cover them. A step is then one matrix product per layer above the
    first, the head, and element-wise work.
    """

    def __init__(self, model):
        super().__init__(model)
        rnn = model.rnn
        H = self.H = model.hidden_size
        self.layers = model.num_layers
        order = torch.cat([torch.arange(0, 2 * H), torch.arange(3 * H, 4 * H), torch.arange(2 * H, 3 * H)])
        with torch.inference_mode():
            w_ih = [getattr(rnn, f"weight_ih_l{k}").detach()[order] for k in range(self.layers)]
            w_hh = [getattr(rnn, f"weight_hh_l{k}").detach()[order] for k in range(self.layers)]
            bias = [(getattr(rnn, f"bias_ih_l{k}").detach() + getattr(rnn, f"bias_hh_l{k}").detach())[order]
                    if rnn.bias else torch.zeros(4 * H, dtype=w_ih[0].dtype) for k in range(self.layers)]
            self.table = (model.embedding.weight.detach() @ w_ih[0].t()).contiguous()  # [V, 4H]
            self.w_ih_t = [w.t().contiguous() for w in w_ih]  # [in, 4H]
            self.w_hh_t = [w.t().contiguous() for w in w_hh]  # [H, 4H]
            self.bias = bias
            self.head_t = model.head.weight.detach().t().contiguous()  # [H, V]
            self.head_b = model.head.bias.detach().clone()

    @staticmethod
    def usable(model) -> bool:
        rnn = model.rnn
        return (model.arch == "lstm" and not model.training and type(rnn) is nn.LSTM
                and getattr(rnn, "proj_size", 0) == 0 and not rnn.bidirectional and rnn.batch_first
                and model.head.bias is not None and model.head.weight.dtype == torch.float32
                and model.head.weight.device.type == "cpu")

    def root(self, state) -> LSTMNodes:
        h, c = state
        return LSTMNodes([h[k] for k in range(self.layers)], [c[k] for k in range(self.layers)])

    def _pre(self, state: LSTMNodes) -> list:
        if state.pre is None:
            state.pre = [torch.addmm(self.bias[k], state.h[k], self.w_hh_t[k]) for k in range(self.layers)]
        return state.pre

    def _cell(self, gates: torch.Tensor, c_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """LSTM cell on pre-activations ``gates [B, 4H]`` (i, f, o, g; owned, so changed in place)."""
        H = self.H
        gates[:, :3 * H].sigmoid_()
        gates[:, 3 * H:].tanh_()
        c = gates[:, H:2 * H] * c_prev
        c.addcmul_(gates[:, :H], gates[:, 3 * H:])
        h = torch.tanh(c)
        h.mul_(gates[:, 2 * H:3 * H])
        return h, c

    def children(self, state: LSTMNodes, local: torch.Tensor | None, tok: torch.Tensor, keep: bool = True):
        pre = self._pre(state)
        hs, cs = [], []
        x = None
        for k in range(self.layers):
            p = pre[k] if local is None else pre[k].index_select(0, local)
            if k == 0:
                gates = p + self.table.index_select(0, tok)
            elif local is None:
                gates = torch.addmm(p, x, self.w_ih_t[k])
            else:
                gates = p.addmm_(x, self.w_ih_t[k])
            c_prev = state.c[k] if local is None else state.c[k].index_select(0, local)
            x, c = self._cell(gates, c_prev)
            hs.append(x)
            cs.append(c)
        logits = torch.addmm(self.head_b, x, self.head_t)
        return torch.log_softmax(logits, dim=1), LSTMNodes(hs, cs)

    def run(self, state: LSTMNodes, local: torch.Tensor | None, tokens: torch.Tensor) -> torch.Tensor:
        h, c = torch.stack(state.h), torch.stack(state.c)
        if local is not None:
            h, c = h.index_select(1, local), c.index_select(1, local)
        return self.model.run(tokens, (h, c))[0]


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
