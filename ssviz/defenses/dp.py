"""DP-SGD training with Opacus (the paper's section 8.3, Table 7): a backend of :func:`ssviz.train.train`.

The model is made DP-compatible by Opacus' own module fixing
(``ModuleValidator.fix`` turns ``nn.LSTM``/``nn.GRU`` into ``DPLSTM``/``DPGRU``,
whose per-example gradients exist, and copies the weights), trained with
RMSProp as in the paper, with per-example clipping and Gaussian noise; the
privacy spent comes from Opacus' accountant (RDP = the moments accountant by
default). The DP layers name their tensors like torch's, so after every epoch
the weights are copied back into the ordinary :class:`~ssviz.models.rnn.CharRNN`:
everything else (scoring, exposure, checkpoints) sees a normal model.

Batches are drawn by Poisson sampling over fixed windows of the training text
(the accountant's assumption); the plain trainer's random window offset per
epoch is not used here. This module depends on the data helpers and the model,
never on :mod:`ssviz.train` (which picks this backend when DP is configured).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from ssviz.corpus import windows
from ssviz.errors import SsvizError
from ssviz.models.rnn import CharRNN, TrainingForward

# Opacus hooks the embedding, whose integer inputs never need gradients: harmless, silence it.
warnings.filterwarnings("ignore", message="Full backward hook is firing")

PARTS = ("embedding", "rnn", "head")


def dp_module(model: CharRNN) -> nn.Module:
    """A copy of ``model`` made DP-compatible by Opacus (DP RNN layers holding the same weights)."""
    from opacus.validators import ModuleValidator

    fixed = ModuleValidator.fix(model)
    errors = ModuleValidator.validate(fixed.train(), strict=False)  # Opacus checks modules in training mode
    if errors:
        raise SsvizError(f"DP training cannot handle this model: {errors[0]}")
    return fixed.train(model.training)


def copy_weights(source: nn.Module, target: nn.Module) -> None:
    """Copy embedding, RNN and head weights between a CharRNN and its DP copy (either way).

    Done per part: the DP layers map torch's tensor names only on their own state dict.
    """
    with torch.no_grad():
        for name in PARTS:
            state = {k: v.detach().clone() for k, v in getattr(source, name).state_dict().items()}
            getattr(target, name).load_state_dict(state)


class DPBackend:
    """The training backend :func:`ssviz.train.train` uses when DP is configured."""

    def __init__(self, model: CharRNN, config, train_ids: torch.Tensor, rng: np.random.Generator,
                 generator: torch.Generator):
        from opacus import PrivacyEngine

        self.model, self.config = model, config
        self.raw = dp_module(model)
        data = windows(train_ids, config.seq_len)
        if len(data) < 2:
            raise SsvizError("corpus too short for DP training")
        loader_generator = torch.Generator().manual_seed(int(rng.integers(0, 2 ** 31)))
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data),
                                             batch_size=min(config.batch_size, len(data)),
                                             generator=loader_generator)
        net = TrainingForward(self.raw, config.dropout, generator)
        optimizer = torch.optim.RMSprop(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        common = dict(module=net, optimizer=optimizer, data_loader=loader, max_grad_norm=config.dp_clip,
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
        """Copy the DP layers' weights into the ordinary model (same tensor names)."""
        copy_weights(self.raw, self.model)
        return self.model

    def epsilon(self) -> float:
        """Epsilon spent so far at ``config.dp_delta`` (inf when no noise is added)."""
        if self.noise_multiplier == 0:
            return float("inf")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(self.engine.get_epsilon(self.config.dp_delta))
