"""DP-SGD training with Opacus (the paper's section 8.3, Table 7): a backend of :func:`ssviz.train.train`.

The model is made DP-compatible by Opacus' own module fixing
(``ModuleValidator.fix`` turns ``nn.LSTM``/``nn.GRU`` into ``DPLSTM``/``DPGRU``,
whose per-example gradients exist, and copies the weights), trained with
RMSProp as in the paper, with per-example clipping and Gaussian noise; the
privacy spent comes from Opacus' accountant (RDP = the moments accountant by
default). The model makes its DP-compatible copy itself (``model.dp_module()``)
and takes the trained weights back after every epoch
(``model.load_training_weights``): everything else (scoring, exposure,
checkpoints) sees a normal model.

Batches are drawn by Poisson sampling over fixed windows of the training text
(the accountant's assumption); the plain trainer's random window offset per
epoch is not used here. This module depends on the data helpers and the model,
never on :mod:`ssviz.train`: importing it registers :class:`DPBackend` as the
``"dp"`` backend (:mod:`ssviz.training_plugins`), which training looks up when
DP is configured.

Speed: Opacus' hook mode computes the per-example gradients of a DP RNN layer
once per time step and accumulates them (20 outer products and sums per
weight and batch). :class:`PerSampleGradients` computes the same per-example
gradients in one vectorized pass per layer over all time steps, and hands them
to Opacus' own DP optimizer (``grad_sample_mode="no_op"``): clipping, noise,
Poisson sampling and the accountant are Opacus' unchanged, so the privacy
guarantee is the same. ``DPBackend.grad_sample_mode = "hooks"`` gives Opacus'
own path (tests and ``bench/bench_dp.py`` compare the two). The vectorized pass
covers modules whose weights all sit in linear and embedding layers; other
modules get ``DPBackend.uncovered_grad_sample_mode``.

Transformers (gpt2, llama) train a copy of the model's torch module with AdamW
under Opacus' own per-layer hooks: a transformer reads a window in one pass per
layer, so the RNN's per-time-step cost does not arise. Layers Opacus has no
per-example gradient rule for (GPT-2's ``Conv1D``, Llama's ``RMSNorm``) get one
from functorch (``vmap`` of the layer's gradient), Opacus' own fallback; tied
weights (GPT-2's head is its embedding) add up both uses. Tests compare every
per-example gradient with one backward pass per example, and the accounting
with Opacus' accountant for the same settings.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from ssviz.corpus import windows
from ssviz.errors import SsvizError
from ssviz.memory import ensure_memory
from ssviz.models.base import LanguageModel
from ssviz.training_plugins import register_backend

# Opacus hooks the embedding, whose integer inputs never need gradients: harmless, silence it.
warnings.filterwarnings("ignore", message="Full backward hook is firing")

def dp_module(model: LanguageModel) -> nn.Module:
    """The copy of ``model``'s torch module that the model makes DP-compatible (a CharRNN: Opacus' DP RNN
    layers holding the same weights; a transformer: its module as it is), checked by Opacus."""
    from opacus.validators import ModuleValidator

    fixed = model.dp_module()
    training = fixed.training
    errors = ModuleValidator.validate(fixed.train(), strict=False)  # Opacus checks modules in training mode
    if errors:
        raise SsvizError(f"DP training cannot handle this model: {errors[0]}")
    return fixed.train(training)


class PerSampleGradients:
    """Per-example gradients of a char-LM's layers, every time step at once (for Opacus' DP optimizer).

    Forward hooks keep each call's input and, through a tensor hook, the gradient
    of its output. A linear layer's per-example gradient is then one batched
    product over all its calls and positions (``sum_k g_k a_k^T`` per example);
    an embedding's is a scatter-add of output gradients into the rows of the
    example's tokens. Scaled like Opacus (mean loss: times the batch size) so
    clipping sees exactly the gradients its hook mode would compute.
    """

    def __init__(self, module: nn.Module):
        if not self.covers(module):
            raise SsvizError("vectorized per-example gradients cover linear and embedding layers only")
        self.layers = self.trained_layers(module)
        self.capturing = False
        self.calls: dict[nn.Module, list] = {m: [] for m in self.layers}
        self.handles = [m.register_forward_hook(self._forward) for m in self.layers]

    @staticmethod
    def trained_layers(module: nn.Module) -> list[nn.Module]:
        return [m for m in module.modules()
                if isinstance(m, (nn.Linear, nn.Embedding)) and any(p.requires_grad for p in m.parameters())]

    @classmethod
    def covers(cls, module: nn.Module) -> bool:
        """Whether every trained weight of ``module`` sits in a linear or embedding layer (a character RNN's
        DP copy; not a transformer, whose norms and GPT-2's ``Conv1D`` hold weights too)."""
        covered = {id(p) for m in cls.trained_layers(module) for p in m.parameters()}
        return all(id(p) in covered for p in module.parameters() if p.requires_grad)

    def _forward(self, layer, inputs, output):
        if not (self.capturing and layer.training and torch.is_grad_enabled()):
            return
        call = [inputs[0].detach(), None]
        self.calls[layer].append(call)
        output.register_hook(lambda grad: call.__setitem__(1, grad.detach()))

    def start(self) -> None:
        """Keep activations and gradients of the next forward and backward pass."""
        for calls in self.calls.values():
            calls.clear()
        self.capturing = True

    def assign(self) -> None:
        """Set ``p.grad_sample`` of every parameter from the last forward and backward pass."""
        self.capturing = False
        for layer, calls in self.calls.items():
            if not calls or any(g is None for _, g in calls):
                raise SsvizError("per-example gradients missing for a layer (was it used in the forward pass?)")
            n = calls[0][0].shape[0]
            grads = torch.cat([g.reshape(n, -1, g.shape[-1]) for _, g in calls], dim=1) * n  # [B, K, out]
            if isinstance(layer, nn.Embedding):
                ids = torch.cat([a.reshape(n, -1) for a, _ in calls], dim=1)  # [B, K]
                sample = grads.new_zeros(n, *layer.weight.shape)
                layer.weight.grad_sample = sample.scatter_add_(1, ids[..., None].expand_as(grads), grads)
                continue
            acts = torch.cat([a.reshape(n, -1, a.shape[-1]) for a, _ in calls], dim=1).to(grads.dtype)
            if layer.weight.requires_grad:
                layer.weight.grad_sample = torch.bmm(grads.transpose(1, 2), acts)  # [B, out, in]
            if layer.bias is not None and layer.bias.requires_grad:
                layer.bias.grad_sample = grads.sum(1)
            calls.clear()


class DPBackend:
    """The training backend :func:`ssviz.train.train` uses when DP is configured (registered as ``"dp"``)."""

    grad_sample_mode = "vectorized"  # or "hooks": Opacus' per-time-step hooks (same gradients, slower)
    # modules the vectorized pass does not cover (transformers): "hooks", or "functorch" (every layer by vmap)
    uncovered_grad_sample_mode = "hooks"

    def __init__(self, model: LanguageModel, config, train_ids: torch.Tensor, rng: np.random.Generator,
                 generator: torch.Generator):
        from opacus import PrivacyEngine

        self.model, self.config = model, config
        self.raw = dp_module(model)
        data = windows(train_ids, config.seq_len)
        if len(data) < 2:
            raise SsvizError("corpus too short for DP training")
        batch = min(config.batch_size, len(data))
        params = sum(p.numel() for p in self.raw.parameters())
        # Poisson batches vary around their mean: room for half again as many examples
        ensure_memory(int(1.5 * batch) * params * 4 * 2, f"DP-SGD's per-example gradients ({params:,} weights "
                      f"for each of about {batch} examples)", "use a smaller --batch-size or model")
        loader_generator = torch.Generator().manual_seed(int(rng.integers(0, 2 ** 31)))
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data), batch_size=batch,
                                             generator=loader_generator)
        net = model.training_forward(config.dropout, generator, self.raw)
        covered = PerSampleGradients.covers(net)
        self.per_sample = PerSampleGradients(net) if covered and self.grad_sample_mode == "vectorized" else None
        optimizer = model.make_optimizer(net.parameters(), config)
        mode = "no_op" if self.per_sample else "hooks" if covered else self.uncovered_grad_sample_mode
        common = dict(module=net, optimizer=optimizer, data_loader=loader, max_grad_norm=config.dp_clip,
                      noise_generator=torch.Generator(device=model.device).manual_seed(config.seed + 1),
                      grad_sample_mode=mode)
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
        if self.per_sample:
            self.per_sample.start()
        return self.module(tokens)

    def clip(self) -> None:
        """After backward: hand the per-example gradients to the DP optimizer, which clips and adds noise."""
        if self.per_sample:
            self.per_sample.assign()

    def export(self) -> LanguageModel:
        """Copy the DP copy's weights into the ordinary model."""
        self.model.load_training_weights(self.raw)
        return self.model

    def epoch_fields(self) -> dict:
        return {"epsilon": self.epsilon()}

    def result_fields(self) -> dict:
        return {"epsilon": self.epsilon(), "dp_noise": self.noise_multiplier}

    def epsilon(self) -> float:
        """Epsilon spent so far at ``config.dp_delta`` (inf when no noise is added).

        Cached per accountant state: the RDP conversion takes a noticeable part of a small epoch.
        """
        if self.noise_multiplier == 0:
            return float("inf")
        key = repr(getattr(self.engine.accountant, "history", None))
        if getattr(self, "_epsilon", (None, None))[0] != key:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._epsilon = (key, float(self.engine.get_epsilon(self.config.dp_delta)))
        return self._epsilon[1]


register_backend("dp", DPBackend)
