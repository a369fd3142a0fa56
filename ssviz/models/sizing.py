"""Will a model fit? Estimated before a byte of weights is read, so a model too large for the machine is one
line ("needs 16.1 GB in float32, 15.2 GB free: try --dtype bfloat16 or --device cuda"), not minutes of
swapping followed by an out-of-memory kill.

The estimate is parameters x bytes per element of the precision asked for (parameters counted from the
weight files' safetensors headers, or from ``config.json``'s sizes where the headers cannot be read),
plus one scoring batch: :data:`BATCH_ROWS` rows of key/value cache over :data:`BATCH_TOKENS` tokens and
their float32 log-probabilities over the vocabulary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ssviz.errors import SpaceTooLargeError
from ssviz.messages import clip

BATCH_ROWS = 64     # the scorer's smallest chunk (scoring.MIN_CHUNK)
BATCH_TOKENS = 128  # a template's text is rarely longer


class ModelTooLargeError(SpaceTooLargeError):
    """A model (plus one batch) needs more memory than the device has free."""


@dataclass(frozen=True)
class Estimate:
    parameters: int
    weight_bytes: int
    batch_bytes: int

    @property
    def total(self) -> int:
        return self.weight_bytes + self.batch_bytes


def _int(cfg: dict, *keys, default: int = 0) -> int:
    for k in keys:
        v = cfg.get(k)
        if type(v) is int and v > 0:
            return v
    return default


def _text_config(config: dict) -> dict:
    inner = config.get("text_config")
    return inner if isinstance(inner, dict) else config


def parameters_from_config(config: dict) -> int:
    """Parameters a decoder's config describes (embeddings, attention with grouped keys and values, a gated
    or plain MLP, the head unless tied): within a few percent for GPT-2, Llama, Mistral and Qwen shapes."""
    cfg = _text_config(config)
    d = _int(cfg, "hidden_size", "n_embd", "d_model")
    layers = _int(cfg, "num_hidden_layers", "n_layer", "num_layers")
    vocab = _int(cfg, "vocab_size")
    heads = _int(cfg, "num_attention_heads", "n_head", default=1)
    kv = _int(cfg, "num_key_value_heads", default=heads)
    hd = _int(cfg, "head_dim", default=max(1, d // max(heads, 1)))
    gated = "intermediate_size" in cfg
    ff = _int(cfg, "intermediate_size", "n_inner", "ffn_dim", default=4 * d)
    positions = _int(cfg, "n_positions") if "n_positions" in cfg else 0
    tied = cfg.get("tie_word_embeddings", config.get("tie_word_embeddings", not gated)) is not False
    attention = d * heads * hd * 2 + 2 * d * kv * hd
    mlp = (3 if gated else 2) * d * ff
    embeddings = vocab * d * (1 if tied else 2) + positions * d
    return layers * (attention + mlp + 4 * d) + embeddings + 2 * d


def batch_bytes(config: dict, dtype: torch.dtype) -> int:
    cfg = _text_config(config)
    d = _int(cfg, "hidden_size", "n_embd", "d_model", default=64)
    layers = _int(cfg, "num_hidden_layers", "n_layer", "num_layers", default=1)
    vocab = _int(cfg, "vocab_size", default=256)
    heads = _int(cfg, "num_attention_heads", "n_head", default=1)
    kv = _int(cfg, "num_key_value_heads", default=heads)
    hd = _int(cfg, "head_dim", default=max(1, d // max(heads, 1)))
    size = torch.finfo(dtype).bits // 8
    cache = 2 * layers * kv * hd * BATCH_TOKENS * size
    activations = 8 * d * BATCH_TOKENS * size
    return BATCH_ROWS * (cache + activations + 3 * vocab * 4)


def estimate(folder: Path, dtype: torch.dtype, parameters: int | None = None) -> Estimate | None:
    """What loading ``folder`` in ``dtype`` and scoring one batch needs; None when its config is unreadable
    (the folder's own checks then say why). ``parameters``: counted from the weights' headers where they
    are known; else from the config's sizes."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(config, dict):
        return None
    params = parameters or parameters_from_config(config)
    size = torch.finfo(dtype).bits // 8
    return Estimate(params, params * size, batch_bytes(config, dtype))


def check_fits(folder: Path, device: torch.device, dtype: torch.dtype, name: str = "model",
               parameters: int | None = None) -> Estimate | None:
    """Refuse, in one line that says what to try, a model that cannot fit the device's free memory."""
    from ssviz.memory import free_bytes, gigabytes
    from ssviz.models.placement import dtype_name
    est = estimate(folder, dtype, parameters)
    if est is None:
        return None
    free = free_bytes(device)  # on a GPU the weights go there straight from the memory-mapped files
    if est.total <= free:
        return est
    hints = []
    if dtype == torch.float32:
        hints.append("--dtype bfloat16")
    if device.type == "cpu":
        hints.append("--device cuda")
    hint = ": try " + " or ".join(hints) if hints else ": use a machine with more memory or a smaller model"
    raise ModelTooLargeError(f"{clip(name, 160)}: needs {gigabytes(est.total)} in {dtype_name(dtype)} "
                             f"({est.parameters:,} parameters plus a batch), {gigabytes(free)} free on "
                             f"{device}{hint}")
