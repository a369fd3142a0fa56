"""Weight quantization of a trained model (the paper's Appendix D.3).

Each tensor is quantized to 2^bits evenly spaced values between its minimum
and maximum and immediately dequantized, so the model keeps its float format
(and its checkpoint stays loadable) while carrying only ``bits`` bits of
information per weight. The paper found that 8 bits changes neither test loss
nor the canary's exposure: memorization is not a matter of spare capacity.

Importing this module registers :func:`quantize_after_training` as the
``"quantize"`` post-training hook (:mod:`ssviz.training_plugins`), which
training runs when ``TrainConfig.quantize`` is set.
"""

from __future__ import annotations

import torch
from torch import nn

from ssviz.errors import SsvizError
from ssviz.training_plugins import register_hook


def quantize_tensor(t: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Quantize-dequantize one tensor to ``2**bits`` levels spanning [min, max] (uniform, per tensor)."""
    if not 1 <= bits <= 16:
        raise SsvizError("bits must be between 1 and 16")
    lo, hi = t.min(), t.max()
    if hi <= lo:
        return t.clone()
    scale = (hi - lo) / (2 ** bits - 1)
    if not scale > 0:  # a range so small (denormal) that the step underflows: nothing to quantize
        return t.clone()
    return torch.round((t - lo) / scale) * scale + lo


@torch.no_grad()
def quantize_model(model: nn.Module, bits: int = 8) -> nn.Module:
    """Quantize every floating-point parameter of ``model`` in place; returns the model."""
    for p in model.parameters():
        if p.is_floating_point():
            p.copy_(quantize_tensor(p.data, bits))
    return model


def distinct_values(model: nn.Module) -> int:
    """The largest number of distinct values in any one tensor (<= 2**bits after quantization)."""
    return max(int(torch.unique(p.detach()).numel()) for p in model.parameters())


def quantize_after_training(result, remeasure) -> None:
    """Quantize the trained model's weights to ``result.config.quantize`` bits; ``result.quantization`` holds
    test loss and exposure before and after (``remeasure`` measures the quantized model)."""
    bits = result.config.quantize
    before = {"test_loss": result.test_loss, "exposure": (result.final or {}).get("exposure")}
    quantize_model(result.model.training_module(), bits)
    remeasure()
    after = {"test_loss": result.test_loss,
             "exposure": result.final["exposure"] if result.canary is not None else None}
    result.quantization = {"bits": bits, "before": before, "after": after}


register_hook("quantize", quantize_after_training)
