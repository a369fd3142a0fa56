"""DP-SGD training with Opacus (the paper's section 8.3, Table 7).

The model is rebuilt with Opacus' ``DPLSTM`` (an LSTM made of linear layers
so per-example gradients exist), trained with RMSProp as in the paper, with
per-example clipping and Gaussian noise; the privacy spent comes from Opacus'
accountant (RDP = the moments accountant by default). DPLSTM names its
tensors exactly like ``nn.LSTM``, so after every epoch the weights are copied
back into the ordinary :class:`~ssviz.models.rnn.CharRNN`: everything else
(scoring, exposure, checkpoints) sees a normal model.

Batches are drawn by Poisson sampling over fixed windows of the training text
(the accountant's assumption); the plain trainer's random window offset per
epoch is not used here.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from ssviz.errors import SsvizError
from ssviz.models.rnn import CharRNN

# Opacus hooks the embedding, whose integer inputs never need gradients: harmless, silence it.
warnings.filterwarnings("ignore", message="Full backward hook is firing")


class DPCharRNN(nn.Module):
    """CharRNN's layout with a DPLSTM (GRU is not offered: Opacus' DPGRU is not wired here)."""

    def __init__(self, model: CharRNN, dropout: float):
        from opacus.layers import DPLSTM
        super().__init__()
        if model.arch != "lstm":
            raise SsvizError("DP training supports arch 'lstm' only (Opacus DPLSTM)")
        self.dropout = dropout
        self.embedding = nn.Embedding(len(model.vocab), model.embedding_dim)
        self.rnn = DPLSTM(model.embedding_dim, model.hidden_size, num_layers=model.num_layers, batch_first=True,
                          dropout=dropout if model.num_layers > 1 else 0.0)
        self.head = nn.Linear(model.hidden_size, len(model.vocab))
        copy_weights(model, self)


    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = nn.functional.dropout(self.embedding(tokens), self.dropout, self.training)
        out, _ = self.rnn(x)
        return self.head(nn.functional.dropout(out, self.dropout, self.training))


def copy_weights(source: nn.Module, target: nn.Module) -> None:
    """Copy embedding, RNN and head weights between CharRNN and DPCharRNN.

    Done per submodule: DPLSTM maps nn.LSTM tensor names only on its own
    state dict, not when nested in a parent's.
    """
    with torch.no_grad():
        for name in ("embedding", "rnn", "head"):
            state = {k: v.detach().clone() for k, v in getattr(source, name).state_dict().items()}
            getattr(target, name).load_state_dict(state)


class DPBackend:
    """The training backend :func:`ssviz.train.train` uses when DP is configured."""

    def __init__(self, model: CharRNN, config, train_ids: torch.Tensor, rng: np.random.Generator):
        from opacus import PrivacyEngine
        from ssviz.train import windows

        self.model, self.config = model, config
        self.raw = DPCharRNN(model, config.dropout)
        data = windows(train_ids, config.seq_len)
        if len(data) < 2:
            raise SsvizError("corpus too short for DP training")
        generator = torch.Generator().manual_seed(int(rng.integers(0, 2 ** 31)))
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data),
                                             batch_size=min(config.batch_size, len(data)), generator=generator)
        optimizer = torch.optim.RMSprop(self.raw.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        common = dict(module=self.raw, optimizer=optimizer, data_loader=loader, max_grad_norm=config.dp_clip,
                      noise_generator=torch.Generator().manual_seed(config.seed + 1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "secure RNG turned off": fine for experiments
            self.engine = PrivacyEngine(accountant=config.dp_accountant)
            if config.dp_epsilon is not None:
                self.module, self.optimizer, self.loader = self.engine.make_private_with_epsilon(
                    target_epsilon=config.dp_epsilon, target_delta=config.dp_delta, epochs=config.epochs, **common)
            else:
                self.module, self.optimizer, self.loader = self.engine.make_private(
                    noise_multiplier=config.dp_noise, **common)
        self.noise_multiplier = float(self.optimizer.noise_multiplier)

    def batches(self):
        return len(self.loader), (b[0] for b in self.loader)

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.module(tokens)

    def clip(self) -> None:
        """Per-example clipping happens inside the DP optimizer."""

    def export(self) -> CharRNN:
        """Copy the DPLSTM weights into the ordinary model (same tensor names)."""
        copy_weights(self.raw, self.model)
        return self.model

    def epsilon(self) -> float:
        """Epsilon spent so far at ``config.dp_delta`` (inf when no noise is added)."""
        if self.noise_multiplier == 0:
            return float("inf")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(self.engine.get_epsilon(self.config.dp_delta))
